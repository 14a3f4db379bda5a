/**
 * What every benchmark under bench/ prints and measures the same way: server CPU time from
 * /proc, medians of rounds, fixed-width figures, and lines on stdout.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/**
 * CPU time (user + system, seconds) of a process and, recursively, its children, from
 * /proc/<pid>/stat; undefined once the process is gone.
 */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // After "pid (comm) ", utime and stime are fields 12 and 13 (0-based) of the rest.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    let total = (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const children = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').split(' ').filter((s) => /^\d+$/.test(s));
      for (const child of children) total += cpuSeconds(Number(child)) ?? 0;
    }
    return total;
  } catch {
    return undefined;
  }
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** A figure with `digits` decimals, '-' when there is none. */
export const fmt = (n: number | undefined, digits = 0): string => (n === undefined || Number.isNaN(n) ? '-' : n.toFixed(digits));

export function say(line = ''): void {
  process.stdout.write(`${line}\n`);
}

/** An integer command-line option (parseArgs values) within [min, max], or a clear error. */
export function integerOption(values: Readonly<Record<string, unknown>>, name: string, min: number, max: number): number {
  const text = values[name];
  const n = Number(text);
  if (typeof text !== 'string' || !Number.isInteger(n) || n < min || n > max) {
    throw new Error(`--${name} wants an integer in [${min}, ${max}], got ${String(text)}`);
  }
  return n;
}
