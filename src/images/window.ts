/**
 * The replication window (node config `images.window: {start: "22:00", end: "06:00"}`): a node
 * pulls chunks only between these local times, as PVS operators asked for (replicate off-hours,
 * leave the links to the machines by day). Pure: the caller passes the time.
 *
 * - Local time of the node, minutes of the day; start inclusive, end exclusive.
 * - A window whose end is before its start wraps midnight (22:00–06:00 is open at 23:30 and at
 *   05:59, closed at 06:00 and at 12:00).
 * - start == end means always open: a window of no minutes would stop replication for good,
 *   which nobody means by writing it.
 */

export interface ReplicationWindow {
  /** "HH:MM", local time. */
  start: string;
  end: string;
}

const MINUTES_PER_DAY = 24 * 60;

/** Minutes after midnight of "HH:MM" (the config schema has checked the form). */
export function minutesOf(hhmm: string): number {
  const m = /^(\d{2}):(\d{2})$/.exec(hhmm);
  if (!m) throw new RangeError(`not a time of day (HH:MM): ${JSON.stringify(hhmm)}`);
  const h = Number(m[1]);
  const min = Number(m[2]);
  if (h > 23 || min > 59) throw new RangeError(`not a time of day (HH:MM): ${JSON.stringify(hhmm)}`);
  return h * 60 + min;
}

function minuteOfDay(now: Date): number {
  return now.getHours() * 60 + now.getMinutes() + now.getSeconds() / 60 + now.getMilliseconds() / 60_000;
}

/** Whether replication may pull at `now` (no window: always). */
export function inWindow(now: Date, window: ReplicationWindow | undefined): boolean {
  if (!window) return true;
  const start = minutesOf(window.start);
  const end = minutesOf(window.end);
  if (start === end) return true;
  const t = minuteOfDay(now);
  return start < end ? t >= start && t < end : t >= start || t < end;
}

/** Milliseconds from `now` until the window next opens (0 when it is open). */
export function msUntilWindowOpens(now: Date, window: ReplicationWindow | undefined): number {
  if (inWindow(now, window)) return 0;
  const start = minutesOf(window!.start);
  const wait = (start - minuteOfDay(now) + MINUTES_PER_DAY) % MINUTES_PER_DAY;
  // Wall-clock minutes; a daylight-saving jump makes this an hour off, which the caller's
  // re-check (it sleeps at most a bounded time, then asks again) absorbs.
  return Math.ceil(wait * 60_000);
}
