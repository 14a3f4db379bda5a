import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { inWindow, minutesOf, msUntilWindowOpens } from './window.js';

/** A local time on an ordinary day (no daylight-saving change). */
const at = (h: number, m: number, s = 0): Date => new Date(2026, 0, 15, h, m, s);

describe('replication window', () => {
  const night = { start: '22:00', end: '06:00' };
  const day = { start: '09:30', end: '17:00' };
  const cases: [string, { start: string; end: string } | undefined, Date, boolean][] = [
    ['no window: always', undefined, at(12, 0), true],
    ['wrapping: late evening', night, at(23, 30), true],
    ['wrapping: start is inclusive', night, at(22, 0), true],
    ['wrapping: just before start', night, at(21, 59, 59), false],
    ['wrapping: after midnight', night, at(0, 0), true],
    ['wrapping: last minute', night, at(5, 59, 59), true],
    ['wrapping: end is exclusive', night, at(6, 0), false],
    ['wrapping: midday', night, at(12, 0), false],
    ['same day: inside', day, at(9, 30), true],
    ['same day: before', day, at(9, 29), false],
    ['same day: end exclusive', day, at(17, 0), false],
    ['start == end: always open', { start: '03:00', end: '03:00' }, at(15, 0), true],
  ];
  for (const [name, window, now, open] of cases) {
    it(name, () => assert.equal(inWindow(now, window), open));
  }

  it('says how long until the window opens', () => {
    assert.equal(msUntilWindowOpens(at(23, 0), night), 0);
    assert.equal(msUntilWindowOpens(at(21, 0), night), 60 * 60_000);
    assert.equal(msUntilWindowOpens(at(6, 0), night), 16 * 60 * 60_000);
    assert.equal(msUntilWindowOpens(at(18, 0), day), 15.5 * 60 * 60_000);
    assert.equal(msUntilWindowOpens(at(12, 0), undefined), 0);
  });

  it('refuses a time that is not HH:MM', () => {
    assert.equal(minutesOf('06:05'), 365);
    assert.throws(() => minutesOf('6:05'), RangeError);
    assert.throws(() => minutesOf('24:00'), RangeError);
  });
});
