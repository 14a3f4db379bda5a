/**
 * Structured logs (pino). Field names are stable: `node` (on every line), `mac`, `xid`, `iface`,
 * `subnet`, `ip`. Two formats: `json`, one object a line (journald, log shippers, the tests),
 * and `pretty`, aligned text for a person at a terminal, with the stable fields first.
 */
import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };
export type LogFormat = 'json' | 'pretty';

export function createLogger(options: { level: string; node?: string; format?: LogFormat; destination?: DestinationStream }): Logger {
  const pinoOptions = {
    level: options.level,
    base: options.node !== undefined ? { node: options.node } : {},
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  if (options.format === 'pretty') {
    const out = options.destination ?? process.stdout;
    const color = options.destination === undefined && process.stdout.isTTY === true && process.env.NO_COLOR === undefined;
    return pino(pinoOptions, prettyStream(out, { color }));
  }
  return options.destination ? pino(pinoOptions, options.destination) : pino(pinoOptions);
}

/** A logger that writes nothing, for tests and one-shot CLI commands. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

const LEVELS: Record<number, { name: string; color: string }> = {
  10: { name: 'TRACE', color: '\x1b[90m' },
  20: { name: 'DEBUG', color: '\x1b[36m' },
  30: { name: 'INFO', color: '\x1b[32m' },
  40: { name: 'WARN', color: '\x1b[33m' },
  50: { name: 'ERROR', color: '\x1b[31m' },
  60: { name: 'FATAL', color: '\x1b[35m' },
};
/** Shown first, in this order, on every line that has them. */
const LEADING = ['iface', 'mac', 'xid', 'ip', 'subnet'] as const;
const OMITTED = new Set(['level', 'time', 'msg', 'node', 'pid', 'hostname', ...LEADING]);

function formatValue(key: string, value: unknown): string {
  if (key === 'xid' && typeof value === 'number') return `0x${value.toString(16).padStart(8, '0')}`;
  if (typeof value === 'string') return /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value);
  if (value !== null && typeof value === 'object' && 'message' in value && typeof (value as { message: unknown }).message === 'string') {
    return JSON.stringify((value as { message: string }).message);
  }
  return JSON.stringify(value);
}

/**
 * One pino JSON line as text: `12:00:00.123 INFO  node1 dhcp handled  iface=eth0 mac=… xid=0x… …`.
 * A line that is not pino's JSON is passed through unchanged.
 */
export function prettyLogLine(line: string, options: { color?: boolean } = {}): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line.replace(/\n?$/, '\n');
  }
  const level = LEVELS[entry.level as number] ?? { name: String(entry.level), color: '' };
  const time = typeof entry.time === 'string' ? entry.time.slice(11, 23) : '';
  const levelText = options.color ? `${level.color}${level.name.padEnd(5)}\x1b[0m` : level.name.padEnd(5);
  const fields = [
    ...LEADING.filter((k) => entry[k] !== undefined).map((k) => `${k}=${formatValue(k, entry[k])}`),
    ...Object.keys(entry)
      .filter((k) => !OMITTED.has(k))
      .map((k) => `${k}=${formatValue(k, entry[k])}`),
  ];
  const head = [time, levelText, typeof entry.node === 'string' ? entry.node : '', String(entry.msg ?? '')].filter((x) => x !== '').join(' ');
  const stack = (entry.err as { stack?: unknown } | undefined)?.stack;
  const tail = typeof stack === 'string' && (entry.level as number) >= 50 ? `\n    ${stack.split('\n').join('\n    ')}` : '';
  return `${head}${fields.length > 0 ? `  ${fields.join(' ')}` : ''}${tail}\n`;
}

/** A pino destination writing pretty lines to `out`. */
export function prettyStream(out: { write(text: string): unknown }, options: { color?: boolean } = {}): DestinationStream {
  return {
    write(chunk: string): void {
      for (const line of chunk.split('\n')) if (line !== '') out.write(prettyLogLine(line, options));
    },
  };
}
