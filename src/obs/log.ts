/** Structured JSON logs (pino). Field names are stable: mac, xid, iface, node, subnet, ip. */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(options: { level: string; node?: string }): Logger {
  return pino({
    level: options.level,
    base: options.node !== undefined ? { node: options.node } : {},
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}

/** A logger that writes nothing, for tests and one-shot CLI commands. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
