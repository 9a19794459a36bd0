/**
 * The verifier: nonces bound to one device, appraisal of pushed evidence against the device's
 * policy (src/attest/appraise.ts), one recorded verdict per push, and the gate the release work
 * calls before it hands a device anything: "a fresh passing verdict, else no". Trust is computed
 * from time on every read (a verdict older than the freshness window is stale even if no timer
 * ran); the timer only records the moment a silent device became untrusted, once per window.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import { EdgeguardError } from '../../errors/index.ts';
import {
  appraiseBootEvidence,
  LogAnalysisCache,
  parseBootPolicyYaml,
  type BootPolicy,
  reasonCodes,
  type QuoteClock,
  type Reason,
  type VerdictEvent,
} from '../../attest/index.ts';
import type { AttestationStatus, DecodedEvidence, NonceResponse, VerdictResponse } from '../../fleet/index.ts';
import type { DeviceRecord, Store } from '../../store/index.ts';
import { parseTpm2bPublic, parseTpmtPublic, type TpmPublic } from '../../tpm/index.ts';
import type { ControlPlaneContext } from '../context.ts';
import { FailureActions, type FailureActionOptions } from './actions.ts';
import { AttestationRecords, type NonceOutcome } from './records.ts';

export interface AttestationOptions {
  /** How long a passing verdict keeps a device trusted (default 300 s). */
  freshnessSeconds?: number;
  /** How long an issued nonce may be used (default 60 s). */
  nonceTtlSeconds?: number;
  /** What a failure sets off (none by default). */
  onFailure?: FailureActionOptions;
}

/** The appraisal's reason codes, and the verifier's own (nonce, policy, AK, time). */
export interface VerifierReason {
  code: string;
  detail: string;
}

/** The PCRs quoted when no policy is assigned yet (the appraisal then fails with NO_POLICY). */
const DEFAULT_PCRS = 'sha256:0,1,2,3,4,5,6,7,8,9';

interface AssignedPolicy {
  sha256: string;
  policy: BootPolicy;
}

const pcrsOf = (assigned: AssignedPolicy | undefined): string => assigned?.policy.pcrs ?? DEFAULT_PCRS;

const NONCE_REASON: Record<Exclude<NonceOutcome, 'accepted'>, VerifierReason> = {
  unknown: { code: 'NONCE_UNKNOWN', detail: 'the control plane never issued this nonce' },
  'other-device': { code: 'NONCE_OTHER_DEVICE', detail: 'the nonce was issued to another device' },
  replayed: { code: 'NONCE_REPLAYED', detail: 'the nonce was already used: evidence is accepted once per nonce' },
  expired: { code: 'NONCE_EXPIRED', detail: 'the nonce expired before the evidence arrived; ask for a new one' },
};

export class AttestationVerifier {
  readonly records: AttestationRecords;
  private readonly freshnessMs: number;
  private readonly nonceTtlSeconds: number;
  private readonly actions: FailureActions;
  private readonly store: Store;
  /** Parsed policies by content hash (YAML parsing costs more than the rest of an appraisal's policy work). */
  private readonly parsedPolicies = new Map<string, BootPolicy>();
  /** Parsed AKs by their stored base64 (device records' ak_public). */
  private readonly akPublics = new Map<string, TpmPublic>();
  /** Each log's replay and policy reasons, by log digest and policy: a device pushes the same log until it reboots. */
  readonly analyses = new LogAnalysisCache();

  constructor(
    private readonly ctx: Pick<ControlPlaneContext, 'store' | 'events' | 'crlChanged'>,
    private readonly log: FastifyBaseLogger,
    options: AttestationOptions = {},
  ) {
    this.store = ctx.store;
    this.records = new AttestationRecords(ctx.store.db);
    this.freshnessMs = (options.freshnessSeconds ?? 300) * 1000;
    this.nonceTtlSeconds = options.nonceTtlSeconds ?? 60;
    this.actions = new FailureActions(options.onFailure ?? {}, ctx, log);
  }

  /** A fresh nonce for this device, and the PCRs its policy needs quoted (sha256:0-9 when none is assigned yet). */
  async issueNonce(deviceId: string): Promise<NonceResponse> {
    const nonce = randomBytes(32).toString('hex');
    const [expiresAt, assigned] = await Promise.all([
      this.records.createNonce(nonce, deviceId, this.nonceTtlSeconds),
      this.policyFor(deviceId),
    ]);
    return { nonce, expiresAt, pcrs: pcrsOf(assigned) };
  }

  /**
   * Appraise, record, emit, act. Every outcome is a recorded verdict, never an exception for bad
   * evidence. With `nextNonce` the verdict carries the device's next nonce, exactly as /nonce
   * would issue it (same device binding and lifetime), stored in the verdict's transaction.
   */
  async appraise(device: DeviceRecord, body: DecodedEvidence): Promise<VerdictResponse> {
    const { reasons, assigned, events = [], acceptedClock } = await this.reasonsFor(device, body);
    const policySha256 = assigned?.sha256;
    const next = body.nextNonce
      ? {
          nonce: randomBytes(32).toString('hex'),
          ttlSeconds: this.nonceTtlSeconds,
          pcrs: pcrsOf(assigned ?? (await this.policyFor(device.id))),
        }
      : undefined;
    const pass = reasons.length === 0;
    const codes = reasonCodes(reasons);
    const now = Date.now();
    const verdictId = randomBytes(16).toString('hex');
    const trustedUntil = pass ? new Date(now + this.freshnessMs).toISOString() : null;
    const write = this.records.verdictWrite(
      {
        id: verdictId,
        device_id: device.id,
        pass: pass ? 1 : 0,
        reasons: JSON.stringify(reasons),
        policy_sha256: policySha256 ?? null,
        received_at: new Date(now).toISOString(),
        events: events.length > 0 ? JSON.stringify(events) : null,
      },
      trustedUntil,
      acceptedClock,
      next,
    );
    const nextExpiresAt = write.nextExpiresAt;
    const eventCodes = events.map((e) => e.code);
    // The verdict (with the next nonce) and its audit event: one transaction, one commit.
    await this.ctx.events.emitWith(
      'attestation.result',
      {
        actor: { kind: 'device', id: device.id },
        subject: device.id,
        outcome: pass ? 'success' : 'failure',
        details: {
          deviceId: device.id,
          verified: pass,
          ...(pass ? {} : { codes, reason: summarize(reasons) }),
          ...(eventCodes.length > 0 ? { events: eventCodes } : {}),
        },
      },
      write.work,
      write.alone,
    );
    this.log.info({ deviceId: device.id, pass, reasons: codes, events: eventCodes }, 'attestation verdict');
    if (!pass) await this.actions.fire(device.id, 'verdict', reasons);
    return {
      verdictId,
      pass,
      codes,
      reasons,
      events,
      ...(trustedUntil ? { trustedUntil } : {}),
      ...(next && nextExpiresAt
        ? { nextNonce: { nonce: next.nonce, expiresAt: nextExpiresAt, pcrs: next.pcrs, ttlSeconds: next.ttlSeconds } }
        : {}),
    };
  }

  private async reasonsFor(
    device: DeviceRecord,
    body: DecodedEvidence,
  ): Promise<{
    reasons: VerifierReason[];
    assigned?: AssignedPolicy;
    events?: VerdictEvent[];
    acceptedClock?: QuoteClock | undefined;
  }> {
    const spent = await this.records.spendNonce(body.nonce, device.id);
    if (spent !== 'accepted') return { reasons: [NONCE_REASON[spent]] };
    const assigned = await this.policyFor(device.id);
    if (!assigned)
      return { reasons: [{ code: 'NO_POLICY', detail: 'no boot policy is assigned to this device or its group' }] };
    if (!device.ak_public)
      return {
        reasons: [{ code: 'AK_UNKNOWN', detail: 'the device enrolled without a TPM attestation key' }],
        assigned,
      };
    const verdict = appraiseBootEvidence({
      akPublic: this.akPublic(device.ak_public),
      evidence: { quote: body.quote, signature: body.signature, eventLog: body.eventLog },
      nonce: Buffer.from(body.nonce, 'hex'),
      policy: assigned.policy,
      previousClock: await this.records.lastQuoteClock(device.id),
      cache: this.analyses,
    });
    return {
      reasons: verdict.reasons,
      assigned,
      events: verdict.events,
      acceptedClock: verdict.acceptedClock,
    };
  }

  /**
   * The device's policy, parsed. Policies are stored under the sha256 of their YAML, so a parse is
   * kept by that hash; the YAML is read and checked against its hash only when it is not kept yet.
   */
  private async policyFor(deviceId: string): Promise<AssignedPolicy | undefined> {
    const sha256 = await this.records.assignedPolicy(deviceId);
    if (sha256 === undefined) return undefined;
    const cached = this.parsedPolicies.get(sha256);
    if (cached) return { sha256, policy: cached };
    const yaml = await this.records.policyYaml(sha256);
    if (yaml === undefined) return undefined;
    if (createHash('sha256').update(yaml).digest('hex') !== sha256)
      throw new EdgeguardError(
        'EG_ATTEST_POLICY',
        `the stored boot policy ${sha256} does not match its hash; assign the policy again (edgeguard attest policy assign).`,
      );
    const policy = parseBootPolicyYaml(yaml, `policy ${sha256}`);
    if (this.parsedPolicies.size >= 1000) this.parsedPolicies.clear();
    this.parsedPolicies.set(sha256, policy);
    return { sha256, policy };
  }

  /**
   * The AK of a device record, parsed once per stored value: kept by the stored bytes themselves,
   * so a device that enrolls again (a new AK) is never checked against the old one. The parsed
   * area also keeps its key object (src/tpm/public.ts).
   */
  private akPublic(stored: string): TpmPublic {
    let ak = this.akPublics.get(stored);
    if (ak === undefined) {
      ak = storedAkPublic(stored);
      if (this.akPublics.size >= 10_000) this.akPublics.clear();
      this.akPublics.set(stored, ak);
    }
    return ak;
  }

  /** The gate: trusted only with a passing verdict inside its window and an approved device. */
  async status(deviceId: string, now: Date = new Date()): Promise<AttestationStatus> {
    const device = await this.store.getDevice(deviceId);
    const current = await this.records.current(deviceId);
    const reasons: VerifierReason[] = [];
    if (device?.status !== 'approved')
      reasons.push({ code: 'DEVICE_NOT_APPROVED', detail: `the device is ${device?.status ?? 'not enrolled'}` });
    if (!current) {
      reasons.push({ code: 'NO_EVIDENCE', detail: 'the device has never pushed evidence' });
      return { deviceId, state: 'unknown', trusted: false, codes: reasonCodes(reasons), reasons };
    }
    const { state, verdict } = current;
    const verdictReasons = JSON.parse(verdict.reasons) as Reason[];
    reasons.push(...verdictReasons);
    const until = state.trusted_until;
    if (verdict.pass && until !== null && until <= now.toISOString())
      reasons.push({ code: 'EVIDENCE_STALE', detail: `no passing evidence since the window closed at ${until}` });
    const trusted = reasons.length === 0;
    return {
      deviceId,
      state: trusted ? 'trusted' : 'untrusted',
      trusted,
      ...(until ? { trustedUntil: until } : {}),
      lastVerdict: {
        id: verdict.id,
        pass: verdict.pass === 1,
        codes: reasonCodes(verdictReasons),
        reasons: verdictReasons,
        ...(verdict.events ? { events: JSON.parse(verdict.events) as VerdictEvent[] } : {}),
        receivedAt: verdict.received_at,
        ...(verdict.policy_sha256 ? { policySha256: verdict.policy_sha256 } : {}),
      },
      codes: reasonCodes(reasons),
      reasons,
    };
  }

  /** Record each device whose window closed without new evidence (once; any replica may run this). */
  async recordSilentDevices(now: Date = new Date()): Promise<string[]> {
    const recorded: string[] = [];
    for (const row of await this.records.silentSince(now)) {
      if (!(await this.records.markSilent(row.device_id, row.trusted_until!, now))) continue;
      recorded.push(row.device_id);
      const reason = { code: 'EVIDENCE_STALE', detail: `no passing evidence since ${row.trusted_until}` };
      this.log.warn({ deviceId: row.device_id, trustedUntil: row.trusted_until }, 'device fell silent: untrusted');
      await this.ctx.events.emit('attestation.result', {
        actor: { kind: 'server', id: 'attestation' },
        subject: row.device_id,
        outcome: 'failure',
        details: { deviceId: row.device_id, verified: false, codes: [reason.code], reason: summarize([reason]) },
      });
      await this.actions.fire(row.device_id, 'silence', [reason]);
    }
    await this.records.pruneNonces();
    return recorded;
  }

  /** Store a policy (content-addressed) and assign it; the YAML is validated first. */
  async assignPolicy(
    target: { device: string } | { group: string },
    yaml: string,
    label: string,
    by: string,
  ): Promise<{ sha256: string }> {
    parseBootPolicyYaml(yaml, label);
    const sha256 = createHash('sha256').update(yaml).digest('hex');
    await this.records.putPolicy({ sha256, label, yaml });
    if ('device' in target) await this.records.assign('device', target.device, sha256, by);
    else await this.records.assign('group', target.group, sha256, by);
    return { sha256 };
  }
}

/**
 * The AK of a device record: enrollment stores the TPM2B_PUBLIC the device sent (u16 size, then the
 * TPMT_PUBLIC, as tpm2-tools writes ak.pub); a bare TPMT_PUBLIC is read too. The two cannot be
 * confused: a TPMT starts with its key type (0x0001 RSA, 0x0023 ECC), never with its own length.
 */
function storedAkPublic(base64: string): TpmPublic {
  const bytes = Buffer.from(base64, 'base64');
  return bytes.length >= 2 && bytes.readUInt16BE(0) === bytes.length - 2
    ? parseTpm2bPublic(bytes)
    : parseTpmtPublic(bytes);
}

function summarize(reasons: VerifierReason[]): string {
  return reasons
    .map((r) => `${r.code}: ${r.detail}`)
    .join('; ')
    .slice(0, 2000);
}
