/**
 * The release director (Uptane Standard 1.2, section 5.2 "Director repository", run by the control
 * plane): operators assign a published release to a device or a group (optionally a canary share
 * of it); each device fetches director metadata naming exactly what it must run, signed by the
 * director key, with the release's content key wrapped to the device's enrolled, TPM-certified
 * binding key. Nothing is issued unless the attestation gate says the device is trusted now;
 * a refusal is an audit event. Devices report what they installed (signed, nonce-bound); a
 * rollout whose devices report more failures than it allows halts itself.
 *
 * Content keys: the operator sends a release's content key with its first assignment; the control
 * plane keeps it sealed to the director's X25519 key (HPKE, docs/formats.md) and opens it only in
 * memory, per issue, to wrap it to one device (content-keys.ts; docs/threat-model.md, "Release director").
 */
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { wipe } from '../../crypto/index.ts';
import { EdgeguardError } from '../../errors/index.ts';
import {
  verifyVersionReport,
  type AssignRequest,
  type Assignment,
  type DeviceReleaseStatus,
  type ReleaseStatusResponse,
  type ReportNonce,
} from '../../fleet/index.ts';
import { wrapContentKey } from '../../keystore/index.ts';
import { buildDirectorTargets, signDirectorTargets, type DirectorAssignment } from '../../release/index.ts';
import type { DeviceRecord } from '../../store/index.ts';
import { parseTpm2bPublic, tpmPublicKey } from '../../tpm/index.ts';
import type { ControlPlaneContext } from '../context.ts';
import { ReleaseCatalog } from './content-keys.ts';
import type { DirectorKeys } from './keys.ts';
import { DirectorRecords, type AssignmentRow } from './records.ts';

/** The gate the attestation plugin supplies: trusted only with a fresh passing verdict. */
export type DirectorGate = (
  deviceId: string,
) => Promise<{ trusted: boolean; reasons: Array<{ code: string; detail: string }> }>;

export interface DirectorOptions {
  /** The control plane's data directory: the release workspace is DATADIR/releases. */
  dataDir: string;
  gate: DirectorGate;
  /** Lifetime of issued director metadata (default 1 day; devices fetch again well before). */
  metadataExpirySeconds?: number;
  /** Lifetime of a version-report nonce (default 120 s). */
  nonceTtlSeconds?: number;
}

function expiresAt(seconds: number): string {
  return new Date(Math.floor(Date.now() / 1000) * 1000 + seconds * 1000).toISOString().replace('.000Z', 'Z');
}

/** The device's binding key from its enrollment record (TPM2B_PUBLIC certified by its AK at enrollment). */
function bindingKeyOf(device: DeviceRecord): ReturnType<typeof tpmPublicKey> {
  if (device.key_provider !== 'tpm' || !device.binding_public)
    throw new EdgeguardError(
      'EG_UNSUPPORTED',
      `device ${device.id} has no enrolled TPM binding key (software-bound); the director wraps keys only to TPM-bound devices.`,
    );
  return tpmPublicKey(parseTpm2bPublic(Buffer.from(device.binding_public, 'base64')));
}

export function assignmentView(row: AssignmentRow, canaryDevices?: string[]): Assignment {
  return {
    id: row.id,
    release: row.release_name,
    version: Number(row.version),
    targetPath: row.target_path,
    scope: row.scope,
    target: row.target,
    ...(row.canary_percent !== null ? { canaryPercent: Number(row.canary_percent) } : {}),
    ...(canaryDevices ? { canaryDevices } : {}),
    maxFailures: Number(row.max_failures),
    state: row.state,
    assignedBy: row.assigned_by,
    assignedAt: row.assigned_at,
    ...(row.halted_at ? { haltedAt: row.halted_at } : {}),
    ...(row.halt_reason ? { haltReason: row.halt_reason } : {}),
  };
}

export class Director {
  readonly records: DirectorRecords;
  private readonly catalog: ReleaseCatalog;
  private readonly expirySeconds: number;
  private readonly nonceTtlSeconds: number;

  constructor(
    private readonly ctx: Pick<ControlPlaneContext, 'store' | 'events' | 'log'>,
    private readonly keys: DirectorKeys,
    private readonly options: DirectorOptions,
  ) {
    this.records = new DirectorRecords(ctx.store.db);
    this.catalog = new ReleaseCatalog(join(options.dataDir, 'releases'), keys.sealing, this.records);
    this.expirySeconds = options.metadataExpirySeconds ?? 24 * 3600;
    this.nonceTtlSeconds = options.nonceTtlSeconds ?? 120;
  }

  /** The canary share of a group: ceil(percent * n / 100) members, picked by a hash of the assignment id. */
  private pickCanary(assignmentId: string, members: string[], percent: number): string[] {
    const rank = (d: string) => createHash('sha256').update(`${assignmentId}/${d}`).digest('hex');
    const count = Math.max(1, Math.ceil((percent * members.length) / 100));
    return [...members].sort((a, b) => (rank(a) < rank(b) ? -1 : 1)).slice(0, count);
  }

  /** Now, or a millisecond after the newest assignment when that is not earlier (same millisecond, clock skew). */
  private async nextAssignedAt(): Promise<string> {
    const now = Date.now();
    const latest = await this.records.latestAssignedAt();
    const after = latest ? Date.parse(latest) + 1 : now;
    return new Date(Math.max(now, after)).toISOString();
  }

  async assign(req: AssignRequest, by: string): Promise<Assignment> {
    const target = await this.catalog.publishedTarget(req.release, req.version);
    if (req.device !== undefined) {
      const device = await this.ctx.store.getDevice(req.device);
      if (!device) throw new EdgeguardError('EG_NOT_FOUND', `no device ${req.device}.`);
      bindingKeyOf(device);
    }
    if (req.contentKey !== undefined)
      await this.catalog.storeContentKey(req.release, req.version, target, req.contentKey);
    else if (!(await this.catalog.hasContentKey(req.release, req.version)))
      throw new EdgeguardError(
        'EG_BAD_REQUEST',
        `the first assignment of ${req.release}@${req.version} needs its content key (release assign --content-key FILE).`,
      );
    const id = randomBytes(16).toString('hex');
    let canary: string[] = [];
    if (req.group !== undefined && req.canaryPercent !== undefined && req.canaryPercent < 100) {
      const members = await this.records.groupMembers(req.group);
      if (members.length === 0)
        throw new EdgeguardError('EG_BAD_REQUEST', `group ${req.group} has no devices to pick a canary from.`);
      canary = this.pickCanary(id, members, req.canaryPercent);
    }
    const row: AssignmentRow = {
      id,
      release_name: req.release,
      version: req.version,
      target_path: target.path,
      scope: req.device !== undefined ? 'device' : 'group',
      target: req.device ?? req.group!,
      canary_percent: canary.length > 0 ? req.canaryPercent! : null,
      max_failures: req.maxFailures ?? 0,
      state: 'active',
      assigned_by: by,
      assigned_at: await this.nextAssignedAt(),
      halted_at: null,
      halt_reason: null,
    };
    await this.records.insertAssignment(row, canary);
    await this.ctx.events.emit('admin.action', {
      actor: { kind: 'admin', id: by },
      subject: `${req.release}@${req.version}`,
      outcome: 'success',
      details: {
        action: 'release.assign',
        target: `${row.scope}:${row.target}`,
        detail: canary.length > 0 ? `canary ${row.canary_percent}%: ${canary.join(', ')}`.slice(0, 2000) : 'all',
      },
    });
    return assignmentView(row, canary.length > 0 ? canary : undefined);
  }

  /**
   * The assignment that applies to the device for each release name: its own newest, else its
   * group's newest (a canary only for its members); with `includeHalted` false a halted one is
   * passed over, so the device falls back to the release assigned before it.
   */
  async effectiveAssignments(deviceId: string, includeHalted = false): Promise<AssignmentRow[]> {
    const group = await this.records.groupOf(deviceId);
    const rows = await this.records.assignmentsFor(deviceId, group);
    const byName = new Map<string, AssignmentRow>();
    const ordered = [...rows.filter((r) => r.scope === 'device'), ...rows.filter((r) => r.scope === 'group')];
    for (const r of ordered) {
      if (byName.has(r.release_name)) continue;
      if (!includeHalted && r.state === 'halted') continue;
      if (r.canary_percent !== null && !(await this.records.canaryMembers(r.id)).includes(deviceId)) continue;
      byName.set(r.release_name, r);
    }
    return [...byName.values()];
  }

  /** Director metadata for this device, or a typed refusal (attestation) that is also an audit event. */
  async targetsFor(device: DeviceRecord): Promise<Record<string, unknown>> {
    const verdict = await this.options.gate(device.id);
    if (!verdict.trusted) {
      const reason = verdict.reasons.map((r) => `${r.code}: ${r.detail}`).join('; ') || 'not trusted';
      await this.ctx.events.emit('release.rejected', {
        actor: { kind: 'server', id: 'director' },
        subject: device.id,
        outcome: 'denied',
        details: { releaseId: 'director', deviceId: device.id, reason: `attestation: ${reason}`.slice(0, 2000) },
      });
      throw new EdgeguardError(
        'EG_ATTEST_REFUSED',
        `no release metadata for ${device.id}: its attestation is not fresh and passing (${reason}); push evidence first.`,
        { details: { reason: 'attestation' } },
      );
    }
    const assignments: DirectorAssignment[] = [];
    const rows = await this.effectiveAssignments(device.id);
    const binding = rows.length > 0 ? bindingKeyOf(device) : undefined;
    for (const row of rows) {
      const repositoryTarget = await this.catalog.publishedTarget(row.release_name, Number(row.version));
      const key = await this.catalog.openContentKey(row.release_name, Number(row.version));
      try {
        assignments.push({ repositoryTarget, assignmentId: row.id, wrappedKey: wrapContentKey(key, binding!) });
      } finally {
        wipe(key.bytes);
      }
    }
    const md = buildDirectorTargets({
      deviceId: device.id,
      version: await this.records.nextDirectorVersion(device.id),
      expires: expiresAt(this.expirySeconds),
      assignments,
    });
    return signDirectorTargets(md, [this.keys.signing]).toJSON();
  }

  async issueNonce(deviceId: string): Promise<ReportNonce> {
    const nonce = randomBytes(32).toString('hex');
    const expiresAt = await this.records.createNonce(nonce, deviceId, this.nonceTtlSeconds);
    return { nonce, expiresAt };
  }

  /** A signed version report: verified, recorded, an audit event; a failure may halt its rollout. */
  async report(device: DeviceRecord, envelope: string, certificateKey: Parameters<typeof verifyVersionReport>[1]) {
    let report;
    try {
      report = verifyVersionReport(envelope, certificateKey);
    } catch (e) {
      throw new EdgeguardError('EG_BAD_REQUEST', `the version report does not verify: ${(e as Error).message}`, {
        cause: e,
      });
    }
    if (report.deviceId !== device.id)
      throw new EdgeguardError('EG_FORBIDDEN', `the report names ${report.deviceId}, not the calling device.`);
    if (!(await this.records.spendNonce(report.nonce, device.id)))
      throw new EdgeguardError(
        'EG_FORBIDDEN',
        'the report nonce is unknown, expired or spent (a replay?); ask for a new one (POST /v1/director/nonce).',
        { details: { reason: 'nonce' } },
      );
    const assignment = (await this.effectiveAssignments(device.id, true)).find(
      (a) => a.release_name === report.release && Number(a.version) === report.version,
    );
    const id = randomBytes(16).toString('hex');
    await this.records.insertReport({
      id,
      device_id: device.id,
      release_name: report.release,
      version: report.version,
      status: report.status,
      detail: report.detail ?? null,
      assignment_id: assignment?.id ?? null,
      envelope,
      received_at: new Date().toISOString(),
    });
    const releaseId = `${report.release}@${report.version}`;
    if (report.status === 'installed') {
      await this.ctx.events.emit('release.installed', {
        actor: { kind: 'device', id: device.id },
        subject: device.id,
        outcome: 'success',
        details: { releaseId, deviceId: device.id, version: String(report.version) },
      });
    } else {
      await this.ctx.events.emit('release.rejected', {
        actor: { kind: 'device', id: device.id },
        subject: device.id,
        outcome: 'failure',
        details: { releaseId, deviceId: device.id, reason: (report.detail ?? 'install failed').slice(0, 2000) },
      });
      if (assignment) await this.haltIfFailing(assignment);
    }
    return { id, assignment: assignment?.id };
  }

  private async haltIfFailing(a: AssignmentRow): Promise<void> {
    const failed = await this.records.failedDevices(a.id);
    if (failed.length <= Number(a.max_failures)) return;
    const reason = `${failed.length} devices reported a failed install (more than ${a.max_failures}): ${failed.join(', ')}`;
    if (!(await this.records.halt(a.id, reason.slice(0, 2000)))) return;
    this.ctx.log.warn({ assignment: a.id, failed }, 'release rollout halted');
    await this.ctx.events.emit('admin.action', {
      actor: { kind: 'server', id: 'director' },
      subject: `${a.release_name}@${a.version}`,
      outcome: 'success',
      details: { action: 'release.halt', target: a.id, detail: reason.slice(0, 2000) },
    });
  }

  /** Per device and release: assigned, installed, last report, failures. */
  async status(release?: string): Promise<ReleaseStatusResponse> {
    const rows = await this.records.listAssignments(release);
    const assignments = await Promise.all(
      rows.map(async (r) =>
        assignmentView(r, r.canary_percent !== null ? await this.records.canaryMembers(r.id) : undefined),
      ),
    );
    const reports = await this.records.reports(release);
    const devices: DeviceReleaseStatus[] = [];
    for (const d of await this.ctx.store.listDevices({ status: 'approved' })) {
      const effective = await this.effectiveAssignments(d.id, true);
      const active = new Map((await this.effectiveAssignments(d.id)).map((a) => [a.release_name, a]));
      const names = new Set([
        ...effective.map((a) => a.release_name),
        ...reports.filter((r) => r.device_id === d.id).map((r) => r.release_name),
      ]);
      for (const name of [...names].sort()) {
        if (release !== undefined && name !== release) continue;
        const a = active.get(name) ?? effective.find((x) => x.release_name === name);
        const mine = reports.filter((r) => r.device_id === d.id && r.release_name === name);
        const last = mine.at(-1);
        const installed = mine.filter((r) => r.status === 'installed').at(-1);
        devices.push({
          deviceId: d.id,
          release: name,
          ...(a ? { assigned: { version: Number(a.version), assignment: a.id, state: a.state } } : {}),
          ...(installed ? { installed: Number(installed.version) } : {}),
          ...(last
            ? {
                lastReport: {
                  version: Number(last.version),
                  status: last.status,
                  at: last.received_at,
                  ...(last.detail ? { detail: last.detail } : {}),
                },
              }
            : {}),
          failures: mine.filter((r) => r.status === 'failed').length,
        });
      }
    }
    return { assignments, devices };
  }
}
