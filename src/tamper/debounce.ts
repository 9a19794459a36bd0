/**
 * Debouncing: a finding counts only after N consecutive bad readings that span at least a hold
 * time, so contact bounce on a switch or one noisy accelerometer sample does not lock a device,
 * while a real opening (which stays open) still does within N poll intervals.
 */
import type { Debounce } from './sensor.ts';

export interface DebounceState {
  /** Consecutive bad readings so far. */
  streak: number;
  /** When the current streak began (ms, monotonic); undefined while readings are good. */
  since: number | undefined;
}

export const CLEAR: DebounceState = { streak: 0, since: undefined };

/** Pure: the state after one more reading, and whether the finding is now confirmed. */
export function debounceStep(
  state: DebounceState,
  bad: boolean,
  nowMs: number,
  rule: Debounce,
): { state: DebounceState; confirmed: boolean } {
  if (!bad) return { state: CLEAR, confirmed: false };
  const next = { streak: state.streak + 1, since: state.since ?? nowMs };
  return { state: next, confirmed: next.streak >= rule.readings && nowMs - next.since >= rule.holdMs };
}
