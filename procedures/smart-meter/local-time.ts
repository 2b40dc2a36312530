/**
 * Local calendar time in a named time zone, for IngestReading's day rollover and peak hours.
 * Pure functions of (time zone, instant) built on Intl, so procedures stay deterministic; the
 * memo below only avoids recomputing Intl's answer, it never changes it.
 *
 * Time-zone offsets change only at instants aligned to 15 minutes (every zone's rules move the
 * clock at whole or half hours, by multiples of 15 minutes), so one offset serves a whole
 * quarter-hour bucket.
 */

export const intervalMs = 15 * 60_000;
const dayMs = 86_400_000;
const hourMs = 3_600_000;
/** Memoized quarter-hour offsets per zone, before the memo is dropped and rebuilt. */
const offsetMemoEntriesMax = 200_000;

const formatters = new Map<string, Intl.DateTimeFormat>();
const offsetMemos = new Map<string, Map<number, number>>();

/** The formatter for a zone; throws a RangeError naming the zone when Intl does not know it. */
function formatterOf(timeZone: string): Intl.DateTimeFormat {
  let formatter = formatters.get(timeZone);
  if (!formatter) {
    formatter = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
    });
    formatters.set(timeZone, formatter);
  }
  return formatter;
}

/** True when Intl knows the zone (e.g. 'Europe/Amsterdam', 'UTC'). */
export function isTimeZone(timeZone: string): boolean {
  try {
    formatterOf(timeZone);
    return true;
  } catch {
    return false;
  }
}

/** Local wall-clock time minus UTC at `instant`, in ms. */
export function offsetAt(timeZone: string, instant: number): number {
  let memo = offsetMemos.get(timeZone);
  if (!memo) {
    memo = new Map();
    offsetMemos.set(timeZone, memo);
  }
  const bucket = Math.floor(instant / intervalMs);
  const known = memo.get(bucket);
  if (known !== undefined) return known;
  const bucketStart = bucket * intervalMs;
  let year = 0;
  let month = 0;
  let day = 0;
  let hour = 0;
  let minute = 0;
  for (const part of formatterOf(timeZone).formatToParts(bucketStart)) {
    if (part.type === 'year') year = Number(part.value);
    else if (part.type === 'month') month = Number(part.value);
    else if (part.type === 'day') day = Number(part.value);
    else if (part.type === 'hour') hour = Number(part.value);
    else if (part.type === 'minute') minute = Number(part.value);
  }
  const offset = Date.UTC(year, month - 1, day, hour, minute) - bucketStart;
  if (memo.size >= offsetMemoEntriesMax) memo.clear();
  memo.set(bucket, offset);
  return offset;
}

/** The UTC instant at which the local day containing `instant` began. */
export function localDayStart(timeZone: string, instant: number): number {
  const wall = instant + offsetAt(timeZone, instant);
  const midnightWall = Math.floor(wall / dayMs) * dayMs;
  // The offset at midnight can differ from the one at `instant` when the clock moved in between.
  const guess = midnightWall - offsetAt(timeZone, instant);
  return midnightWall - offsetAt(timeZone, guess);
}

/** The local hour of the day (0–23) at `instant`. */
export function localHour(timeZone: string, instant: number): number {
  const wall = instant + offsetAt(timeZone, instant);
  return Math.floor((wall - Math.floor(wall / dayMs) * dayMs) / hourMs);
}

/** The local calendar date (YYYY-MM-DD) at `instant`: billing and export folders name days so. */
export function localDate(timeZone: string, instant: number): string {
  const wall = instant + offsetAt(timeZone, instant);
  return new Date(wall).toISOString().slice(0, 10);
}

/** Whether `hour` falls in a tariff's peak window [start, end); a window may wrap midnight. */
export function isPeakHour(hour: number, peakStartHour: number, peakEndHour: number): boolean {
  return peakStartHour <= peakEndHour ? hour >= peakStartHour && hour < peakEndHour : hour >= peakStartHour || hour < peakEndHour;
}
