/** Log formats: JSON with stable field names, and the pretty text for a terminal. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createLogger, prettyLogLine } from './log.js';

function capture(format: 'json' | 'pretty'): { lines: string[]; log: ReturnType<typeof createLogger> } {
  const lines: string[] = [];
  const log = createLogger({ level: 'debug', node: 'lab1', format, destination: { write: (s: string) => void lines.push(...s.split('\n').filter((l) => l !== '')) } });
  return { lines, log };
}

describe('logs', () => {
  it('writes JSON lines with node on every line and the fields as given', () => {
    const { lines, log } = capture('json');
    log.info({ iface: 'eth0', mac: '52:54:00:12:34:56', xid: 0x1234abcd, type: 'DISCOVER' }, 'dhcp handled');
    const entry = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.equal(entry.node, 'lab1');
    assert.equal(entry.msg, 'dhcp handled');
    assert.equal(entry.iface, 'eth0');
    assert.equal(entry.mac, '52:54:00:12:34:56');
    assert.equal(entry.xid, 0x1234abcd);
    assert.match(String(entry.time), /^\d{4}-\d\d-\d\dT/);
  });

  it('pretty: time, level, node, message, then iface, mac, xid first and the rest after', () => {
    const { lines, log } = capture('pretty');
    log.info({ type: 'DISCOVER', mac: '52:54:00:12:34:56', xid: 0x1234abcd, iface: 'eth0', note: 'new lease' }, 'dhcp handled');
    assert.match(lines[0]!, /^\d\d:\d\d:\d\d\.\d{3} INFO  lab1 dhcp handled {2}iface=eth0 mac=52:54:00:12:34:56 xid=0x1234abcd type=DISCOVER note="new lease"$/);
    log.warn({ err: new Error('boom') }, 'close failed');
    assert.match(lines[1]!, /WARN  lab1 close failed {2}err="boom"$/);
  });

  it('pretty: passes through a line that is not JSON', () => {
    assert.equal(prettyLogLine('plain text'), 'plain text\n');
    assert.match(prettyLogLine('{"level":50,"time":"2026-01-01T10:00:00.000Z","msg":"x","err":{"message":"m","stack":"Error: m\\n    at f"}}'), /^10:00:00\.000 ERROR x {2}err="m"\n {4}Error: m\n {8}at f\n$/);
  });
});
