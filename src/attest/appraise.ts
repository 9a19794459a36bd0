/**
 * Appraisal of measured-boot evidence: a pure function from (AK public key, TPM2_Quote, expected
 * nonce, event log, policy) to a verdict with typed reasons. The quote is checked first (signature
 * by a restricted TPM key, the nonce, the signed PCR selection covering what the policy reads, the
 * quoted PCR digest equal to the log's replay: TPM 2.0 Library Part 3, 18.4); only then is the log
 * believed, and only through its digests (src/eventlog), for the policy's checks.
 * The quote's clock is checked against the device's last accepted quote (quote-clock.ts).
 * Nonce freshness and single use, which AK belongs to which device and the last accepted clock
 * are the caller's state.
 */
import { isEdgeguardError } from '../errors/index.ts';
import {
  deriveSecureBootState,
  extractBootComponents,
  parseEventLog,
  replayEventLog,
  replayedPcrsFor,
  type BootComponent,
  type EventLog,
  type Finding,
} from '../eventlog/index.ts';
import {
  HASH_ALGS,
  parsePcrSelection,
  pcrCompositeDigest,
  verifyAttestation,
  type PcrSelection,
  type PcrValues,
  type TpmPublic,
} from '../tpm/index.ts';
import type { BootPolicy } from './boot-policy.ts';
import type { LogAnalysis, LogAnalysisCache } from './log-analysis-cache.ts';
import { checkQuoteClock, quoteClockOf, type QuoteClock, type VerdictEvent } from './quote-clock.ts';

export const REASON_CODES = [
  'QUOTE_MALFORMED',
  'QUOTE_SIGNATURE_INVALID',
  'NONCE_MISMATCH',
  'QUOTE_SELECTION_INCOMPLETE',
  'CLOCK_UNSAFE',
  'RESET_COUNT_DECREASED',
  'RESTART_COUNT_DECREASED',
  'CLOCK_NOT_ADVANCING',
  'LOG_MALFORMED',
  'PCRS_DO_NOT_MATCH_LOG',
  'EVENT_RELABELLED',
  'EVENT_UNVERIFIED',
  'EVENT_NOT_ALLOWED',
  'SEPARATOR_MISSING',
  'SEPARATOR_ERROR',
  'DEBUG_MODE',
  'VARIABLE_DUPLICATED',
  'VARIABLE_MALFORMED',
  'SECURE_BOOT_DISABLED',
  'PK_NOT_ALLOWED',
  'KEK_NOT_ALLOWED',
  'DB_NOT_ALLOWED',
  'DBX_MISSING_ENTRY',
  'SHIM_NOT_ALLOWED',
  'BOOTLOADER_NOT_ALLOWED',
  'KERNEL_NOT_ALLOWED',
  'INITRD_NOT_ALLOWED',
  'CMDLINE_NOT_ALLOWED',
  'BOOT_FILE_NOT_ALLOWED',
  'PCR_VALUE_MISMATCH',
] as const;
export type ReasonCode = (typeof REASON_CODES)[number];

export interface Reason {
  code: ReasonCode;
  detail: string;
}

export interface Verdict {
  pass: boolean;
  reasons: Reason[];
  /** Every failed check's code, once each, in the order of `reasons`. */
  codes: ReasonCode[];
  /** What happened since the last accepted quote (a reboot): facts, not failures. */
  events: VerdictEvent[];
  /**
   * The quote's clock when the quote is genuine (signed by the AK over the nonce) and its clock
   * rules held: what the caller keeps as the device's last accepted quote.
   */
  acceptedClock?: QuoteClock;
}

export interface BootEvidence {
  /** TPMS_ATTEST bytes of a TPM2_Quote, as signed. */
  quote: Uint8Array;
  /** TPMT_SIGNATURE over them. */
  signature: Uint8Array;
  /** The measured-boot event log (binary_bios_measurements). */
  eventLog: Uint8Array;
}

export interface AppraisalInput {
  /** The AK the verifier holds for this device (from enrollment), never one sent with the evidence. */
  akPublic: TpmPublic;
  evidence: BootEvidence;
  /** The nonce the verifier issued for this evidence. */
  nonce: Uint8Array;
  policy: BootPolicy;
  /** The clock of the device's last accepted quote; absent for its first. */
  previousClock?: QuoteClock | undefined;
  /** Log analyses kept between appraisals; the quote is still checked in full on every call. */
  cache?: LogAnalysisCache | undefined;
}

/** The distinct codes of `reasons`, in order of first appearance. */
export function reasonCodes<C extends string>(reasons: Array<{ code: C }>): C[] {
  return [...new Set(reasons.map((r) => r.code))];
}

export function appraiseBootEvidence(input: AppraisalInput): Verdict {
  const quoted = checkQuote(input);
  const clock = quoted.clock;
  const reasons = [
    ...(quoted.reason ? [quoted.reason] : []),
    ...(clock?.reasons ?? []),
    ...(quoted.analysis ? quoted.analysis.reasons.map((r) => ({ ...r })) : []),
  ];
  return {
    pass: reasons.length === 0,
    reasons,
    codes: reasonCodes(reasons),
    events: clock?.events ?? [],
    ...(clock && clock.reasons.length === 0 ? { acceptedClock: clock.accepted } : {}),
  };
}

interface QuoteCheck {
  /** Why the quote cannot be believed (then no log is checked). */
  reason?: Reason;
  /** The clock rules, once the quote is known to be genuine. */
  clock?: ReturnType<typeof checkQuoteClock> & { accepted: QuoteClock };
  /** The log's replay and the policy's reasons on it, once the quote has bound the log. */
  analysis?: LogAnalysis;
}

/** Signature, nonce, clock, selection, then the quoted PCR digest against the log's replay. */
function checkQuote({ akPublic, evidence, nonce, policy, previousClock, cache }: AppraisalInput): QuoteCheck {
  let attested;
  try {
    attested = verifyAttestation(akPublic, evidence.quote, evidence.signature);
  } catch (e) {
    if (isEdgeguardError(e, 'EG_SIGNATURE_INVALID'))
      return { reason: { code: 'QUOTE_SIGNATURE_INVALID', detail: e.message } };
    if (isEdgeguardError(e, 'EG_TPM_STRUCTURE')) return { reason: { code: 'QUOTE_MALFORMED', detail: e.message } };
    throw e;
  }
  const { attest, signature } = attested;
  if (attest.attested.kind !== 'quote')
    return { reason: { code: 'QUOTE_MALFORMED', detail: 'the attestation is not a TPM2_Quote result' } };
  if (!Buffer.from(nonce).equals(attest.extraData))
    return { reason: { code: 'NONCE_MISMATCH', detail: 'the quote does not carry the nonce issued for it' } };
  const clock = { ...checkQuoteClock(attest.clockInfo, previousClock), accepted: quoteClockOf(attest.clockInfo) };
  const { pcrSelect, pcrDigest } = attest.attested;
  const uncovered = uncoveredPcrs(parsePcrSelection(policy.pcrs), pcrSelect);
  if (uncovered.length > 0)
    return {
      reason: { code: 'QUOTE_SELECTION_INCOMPLETE', detail: `the quote does not cover ${uncovered.join(', ')}` },
      clock,
    };
  const key = cache?.keyOf(evidence.eventLog, policy, pcrSelect);
  const cached = key === undefined ? undefined : cache!.get(key);
  let log: EventLog | undefined;
  let values: PcrValues;
  if (cached) values = cached.values;
  else
    try {
      log = parseEventLog(evidence.eventLog);
      // Only the quoted banks are bound by the quote; replaying the others would prove nothing more.
      const banks = pcrSelect.map((b) => b.hashAlg);
      values = replayedPcrsFor(replayEventLog(log, banks), pcrSelect);
    } catch (e) {
      if (isEdgeguardError(e) && e.code.startsWith('EG_EVENTLOG_'))
        return { reason: { code: 'LOG_MALFORMED', detail: e.message }, clock };
      throw e;
    }
  const matches = pcrSelect.every((b) => values[HASH_ALGS[b.hashAlg]?.name ?? '']);
  if (!matches || !pcrCompositeDigest(pcrSelect, values, signature.hashAlg).equals(pcrDigest))
    return {
      reason: {
        code: 'PCRS_DO_NOT_MATCH_LOG',
        detail:
          'the quoted PCRs are not what the event log replays to: the log was edited, or PCRs were extended after the boot it records',
      },
      clock,
    };
  // The policy's reasons are a pure function of (log bytes, policy, selection): what the cache keeps.
  const analysis = cached ?? { values, reasons: checkLogAgainstPolicy(log!, policy, values) };
  if (!cached && key !== undefined) cache!.set(key, analysis);
  return { clock, analysis };
}

/** Bank:PCR pairs the policy needs that the signed selection lacks. */
function uncoveredPcrs(needed: PcrSelection, signed: PcrSelection): string[] {
  const out: string[] = [];
  for (const bank of needed) {
    const have = signed.find((b) => b.hashAlg === bank.hashAlg)?.pcrs ?? [];
    for (const p of bank.pcrs) if (!have.includes(p)) out.push(`${HASH_ALGS[bank.hashAlg]?.name}:${p}`);
  }
  return out;
}

/**
 * The policy's checks on a log, without a quote: what `attest policy check` runs for CI, and what
 * appraisal runs once the quote has bound the log. `quotedValues` (bank -> PCR -> value) serves
 * exactPcrs; without a quote the log's own replay stands in.
 */
export function checkLogAgainstPolicy(
  log: EventLog,
  policy: BootPolicy,
  quotedValues: Record<string, Record<number, Buffer>> = replayEventLog(log),
): Reason[] {
  const state = deriveSecureBootState(log);
  const boot = extractBootComponents(log);
  return [
    ...[...state.findings, ...boot.findings].map(findingReason),
    ...secureBootReasons(state, policy.secureBoot),
    ...componentReasons(boot.components, policy.bootComponents),
    ...exactPcrReasons(quotedValues, policy.exactPcrs),
  ];
}

function findingReason(f: Finding): Reason {
  return { code: f.code, detail: `PCR ${f.pcr}${f.sequence === undefined ? '' : ` event ${f.sequence}`}: ${f.detail}` };
}

function secureBootReasons(
  state: ReturnType<typeof deriveSecureBootState>,
  policy: BootPolicy['secureBoot'],
): Reason[] {
  if (!policy) return [];
  const reasons: Reason[] = [];
  if (policy.required && !state.enabled)
    reasons.push({ code: 'SECURE_BOOT_DISABLED', detail: 'the SecureBoot variable measured in PCR 7 is not 1' });
  const allowed = (code: ReasonCode, name: 'PK' | 'KEK' | 'db', list: string[] | undefined) => {
    const measured = state.variables[name]?.sha256;
    if (list && (!measured || !list.includes(measured)))
      reasons.push({ code, detail: `${name} ${measured ?? '(not measured)'} is not one the policy allows` });
  };
  allowed('PK_NOT_ALLOWED', 'PK', policy.pk);
  allowed('KEK_NOT_ALLOWED', 'KEK', policy.kek);
  allowed('DB_NOT_ALLOWED', 'db', policy.db);
  const dbx = new Set(state.dbx.map((e) => e.sha256));
  const absent = (policy.dbxMustContain ?? []).filter((d) => !dbx.has(d));
  if (absent.length > 0)
    reasons.push({
      code: 'DBX_MISSING_ENTRY',
      detail: `dbx lacks ${absent.length} revocation(s) the policy requires, e.g. ${absent[0]}`,
    });
  return reasons;
}

const COMPONENT_REASON: Record<BootComponent['kind'], ReasonCode> = {
  shim: 'SHIM_NOT_ALLOWED',
  bootloader: 'BOOTLOADER_NOT_ALLOWED',
  kernel: 'KERNEL_NOT_ALLOWED',
  initrd: 'INITRD_NOT_ALLOWED',
  cmdline: 'CMDLINE_NOT_ALLOWED',
  file: 'BOOT_FILE_NOT_ALLOWED',
};

/**
 * Labels come from position and path, which no digest covers, so each PCR is checked as a whole:
 * every image digest in PCR 4 must be an allowed shim, bootloader or kernel, every file digest in
 * PCR 9 an allowed kernel, initrd or file; the reason names the label the component had.
 */
function componentReasons(components: BootComponent[], policy: BootPolicy['bootComponents']): Reason[] {
  if (!policy) return [];
  const union = (...lists: Array<string[] | undefined>) =>
    lists.every((l) => l === undefined) ? undefined : new Set(lists.flatMap((l) => l ?? []));
  const allowedIn: Record<number, Set<string> | undefined> = {
    4: union(policy.shim, policy.bootloader, policy.kernel),
    8: union(policy.cmdline),
    9: union(policy.kernel, policy.initrd, policy.files),
  };
  return components
    .filter((c) => allowedIn[c.pcr] && !allowedIn[c.pcr]!.has(c.digest))
    .map((c) => ({
      code: COMPONENT_REASON[c.kind],
      detail: `${c.kind} in PCR ${c.pcr} (${c.label}) has digest ${c.digest}, which the policy does not allow`,
    }));
}

function exactPcrReasons(values: Record<string, Record<number, Buffer>>, exact: BootPolicy['exactPcrs']): Reason[] {
  const reasons: Reason[] = [];
  for (const [bank, pcrs] of Object.entries(exact ?? {}))
    for (const [index, expected] of Object.entries(pcrs)) {
      const actual = values[bank]?.[Number(index)]?.toString('hex');
      if (actual !== expected)
        reasons.push({
          code: 'PCR_VALUE_MISMATCH',
          detail: `${bank}:${index} is ${actual ?? '(absent)'}, not ${expected}`,
        });
    }
  return reasons;
}
