/**
 * Retry pacing for every device -> control-plane loop (certificate renewal, journal forwarding):
 * a fleet that loses its server must not come back in lockstep, so each delay carries jitter.
 */

/** Exponential backoff after `failures` consecutive failures (1, 2, ...), +-25% jitter, capped. */
export function backoffDelay(failures: number, initialMs: number, maxMs: number, random: number): number {
  const base = Math.min(maxMs, initialMs * 2 ** Math.min(30, Math.max(0, failures - 1)));
  return Math.min(maxMs, Math.round(base * (0.75 + 0.5 * random)));
}
