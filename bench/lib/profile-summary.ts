/**
 * Summarises a V8 CPU profile (`node --cpu-prof`, as `bench/http/run.sh --cpu-prof DIR` and
 * `bench/dhcp/run.sh --cpu-prof DIR` take of pxeha): self time by function and by package or
 * source file, so a benchmark shortfall can be traced to where the server spends its time
 * without opening DevTools.
 *
 * Usage: node --import tsx bench/lib/profile-summary.ts FILE.cpuprofile [--top 30]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const { values, positionals } = parseArgs({ options: { top: { type: 'string', default: '30' } }, allowPositionals: true });
const file = positionals[0];
if (!file) throw new Error('usage: profile-summary.ts FILE.cpuprofile [--top N]');
const top = Number(values.top);
const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;

const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const selfMicros = new Map<number, number>();
for (let i = 0; i < profile.samples.length; i++) {
  const id = profile.samples[i]!;
  selfMicros.set(id, (selfMicros.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
}
const total = [...selfMicros.values()].reduce((a, b) => a + b, 0);

/** node_modules/<pkg> (scoped too), a repo file, node:internal, or V8's own entries. */
function owner(url: string, fn: string): string {
  if (url === '') return `(${fn || 'native'})`;
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1]!;
  const repo = /\/(src|bench|test)\/.*$/.exec(url);
  if (repo) return repo[0].slice(1);
  return url.replace(/^file:\/\//, '');
}

const byFunction = new Map<string, number>();
const byOwner = new Map<string, number>();
for (const [id, micros] of selfMicros) {
  const n = byId.get(id);
  if (!n) continue;
  const { functionName, url, lineNumber } = n.callFrame;
  const where = owner(url, functionName);
  const key = `${functionName || '(anonymous)'}  ${where}${url ? `:${lineNumber + 1}` : ''}`;
  byFunction.set(key, (byFunction.get(key) ?? 0) + micros);
  byOwner.set(where, (byOwner.get(where) ?? 0) + micros);
}

const pct = (micros: number): string => `${((100 * micros) / total).toFixed(1).padStart(5)}%`;
const print = (title: string, m: Map<string, number>): void => {
  console.log(`## ${title}`);
  for (const [k, v] of [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(v)} ${(v / 1000).toFixed(0).padStart(7)} ms  ${k}`);
  console.log();
};
console.log(`# ${file}: ${(total / 1e6).toFixed(2)} s sampled, ${profile.samples.length} samples`);
print('self time by package / file', byOwner);
print('self time by function', byFunction);
