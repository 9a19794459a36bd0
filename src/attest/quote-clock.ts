/**
 * The clock rules of a quote (TPM 2.0 Library Part 1, 36 "Timing Components"; Part 2, 10.11.1
 * TPMS_CLOCK_INFO): a signed quote carries the TPM's Clock (ms, kept across power cycles),
 * resetCount (bumped by each TPM Reset, i.e. a reboot; zeroes restartCount) and restartCount
 * (bumped by each TPM Restart or Resume), and `safe` (NO when Clock may have been reported higher
 * before, e.g. after a power loss without an orderly shutdown). Against the device's last accepted
 * quote: safe must be YES; (resetCount, restartCount) never go back, compared in that order since a
 * reset zeroes restartCount; with the counters unchanged Clock must grow. A TPM whose state was
 * rolled back (a restored vTPM image, a cloned state directory) fails here. The counters are real
 * only for an AK in the endorsement hierarchy (others see them obfuscated), which is what
 * enrollment creates. Pure functions: the verifier holds the previous state.
 */
import type { ClockInfo } from '../tpm/index.ts';

/** What the verifier keeps of a device's last accepted quote. */
export interface QuoteClock {
  clock: bigint;
  resetCount: number;
  restartCount: number;
}

export type ClockReasonCode =
  'CLOCK_UNSAFE' | 'RESET_COUNT_DECREASED' | 'RESTART_COUNT_DECREASED' | 'CLOCK_NOT_ADVANCING';

/** Things that happened to the device since its last accepted quote, recorded with the verdict. */
export interface VerdictEvent {
  code: 'REBOOT' | 'RESTART';
  detail: string;
}

export interface ClockCheck {
  reasons: Array<{ code: ClockReasonCode; detail: string }>;
  events: VerdictEvent[];
}

export function quoteClockOf(info: ClockInfo): QuoteClock {
  return { clock: info.clock, resetCount: info.resetCount, restartCount: info.restartCount };
}

/** The clock rules for a quote's clock info against the last accepted one (none for a first quote). */
export function checkQuoteClock(info: ClockInfo, previous: QuoteClock | undefined): ClockCheck {
  const reasons: ClockCheck['reasons'] = [];
  const events: VerdictEvent[] = [];
  if (!info.safe)
    reasons.push({
      code: 'CLOCK_UNSAFE',
      detail:
        'the quote says the TPM clock is not safe (it may have reported a later time before: a power loss without an orderly shutdown, or a rolled-back TPM state)',
    });
  if (!previous) return { reasons, events };
  const was = `resetCount ${previous.resetCount}, restartCount ${previous.restartCount}`;
  const now = `resetCount ${info.resetCount}, restartCount ${info.restartCount}`;
  if (info.resetCount < previous.resetCount)
    reasons.push({
      code: 'RESET_COUNT_DECREASED',
      detail: `${now} after ${was}: the TPM state was rolled back or this is another TPM`,
    });
  else if (info.resetCount > previous.resetCount)
    events.push({ code: 'REBOOT', detail: `the TPM was reset (a reboot) since the last accepted quote (${was})` });
  else if (info.restartCount < previous.restartCount)
    reasons.push({
      code: 'RESTART_COUNT_DECREASED',
      detail: `${now} after ${was}: the TPM state was rolled back or this is another TPM`,
    });
  else if (info.restartCount > previous.restartCount)
    events.push({
      code: 'RESTART',
      detail: `a TPM Restart or Resume (e.g. a resume from hibernation) since the last accepted quote (${was})`,
    });
  else if (info.clock <= previous.clock)
    reasons.push({
      code: 'CLOCK_NOT_ADVANCING',
      detail: `TPM clock ${info.clock} ms is not past ${previous.clock} ms of the last accepted quote, with no reset or restart between`,
    });
  return { reasons, events };
}
