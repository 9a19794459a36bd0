/**
 * What the dashboard shows, read from the control plane's own records: devices and their
 * certificates (store), attestation verdicts (attestation tables), the audit log (entries up to
 * the latest signed checkpoint, so each one shown can be proven), the review queue (counts only:
 * items stay sealed) and checklist reports through `ChecklistReportSource`, which the control
 * plane wires to wherever it keeps them. Reads are bounded: the audit log is scanned backwards at
 * most AUDIT_SCAN_MAX entries per page.
 */
import type { Kysely } from 'kysely';
import { decodeLogLeaf, type AuditLog, type LogLeaf, type StoredCheckpoint } from '../../audit/index.ts';
import type { ChecklistReport } from '../../checklist/index.ts';
import type { DeviceRecord, Store } from '../../store/index.ts';
import type { AttestationTables } from '../attestation/records.ts';
import { describeValue } from '../../errors/index.ts';

/** The latest checklist report a device uploaded; the dashboard shows "no report" without one. */
export interface StoredChecklistReport {
  report: ChecklistReport;
  receivedAt: string;
  /** SHA-256 of the signed report as logged, hex, when known. */
  sha256?: string;
}

/** Where the dashboard reads checklist reports; the control plane passes its report store. */
export interface ChecklistReportSource {
  latest(deviceId: string): Promise<StoredChecklistReport | undefined>;
}

export const AUDIT_SCAN_MAX = 5000;

export interface DeviceSummary {
  device: DeviceRecord;
  certificateNotAfter: string | undefined;
  attestation: { pass: boolean; at: string; trustedUntil: string | null } | undefined;
  checklist: { score: number; failing: string[]; receivedAt: string } | undefined;
  models: string[];
}

export interface AuditItem {
  index: number;
  leaf: LogLeaf | undefined;
  /** The leaf bytes as stored, base64: what the browser hashes. */
  leafBase64: string;
}

type ReviewTables = { review_items: { id: string; device_id: string; size: number; received_at: string } };

export class DashboardData {
  private readonly attestation: Kysely<AttestationTables>;
  private readonly review: Kysely<ReviewTables>;

  constructor(
    private readonly store: Store,
    readonly log: () => AuditLog | undefined,
    private readonly checklist: ChecklistReportSource | undefined,
  ) {
    this.attestation = store.db.withTables<AttestationTables>() as unknown as Kysely<AttestationTables>;
    this.review = store.db.withTables<ReviewTables>() as unknown as Kysely<ReviewTables>;
  }

  async checkpoint(): Promise<StoredCheckpoint | undefined> {
    return this.log()?.latestCheckpoint();
  }

  /** The newest signed entries (newest first) that `keep` accepts, at most `limit`. */
  async recentEntries(keep: (leaf: LogLeaf) => boolean, limit: number): Promise<AuditItem[]> {
    const log = this.log();
    const size = (await log?.latestCheckpoint())?.size ?? 0;
    if (!log || size === 0) return [];
    const out: AuditItem[] = [];
    const stop = Math.max(0, size - AUDIT_SCAN_MAX);
    for (let end = size; end > stop && out.length < limit; end -= 256) {
      const start = Math.max(stop, end - 256);
      const batch = await log.getEntries(start, end);
      for (let i = batch.length - 1; i >= 0 && out.length < limit; i--) {
        const bytes = Buffer.from(batch[i]!, 'utf8');
        let leaf: LogLeaf | undefined;
        try {
          leaf = decodeLogLeaf(bytes);
        } catch {
          leaf = undefined; // shown as unreadable; its proof is checked all the same
        }
        if (leaf === undefined || keep(leaf))
          out.push({ index: start + i, leaf, leafBase64: bytes.toString('base64') });
      }
    }
    return out;
  }

  async deviceSummaries(): Promise<DeviceSummary[]> {
    const devices = await this.store.listDevices();
    const models = await this.installedModels();
    return Promise.all(
      devices.map(async (device) => {
        const cert = await this.store.latestCertificateFor(device.id);
        const report = await this.checklist?.latest(device.id);
        return {
          device,
          certificateNotAfter: cert?.not_after,
          attestation: await this.latestVerdict(device.id),
          checklist: report && {
            score: report.report.score,
            failing: failingChecks(report.report).map((r) => r.id),
            receivedAt: report.receivedAt,
          },
          models: [...(models.get(device.id) ?? [])],
        };
      }),
    );
  }

  /** Model name@version each device last reported loading (model.loaded and release.installed). */
  private async installedModels(): Promise<Map<string, Set<string>>> {
    const byDevice = new Map<string, Set<string>>();
    const items = await this.recentEntries(
      (l) => l.event.type === 'model.loaded' || l.event.type === 'release.installed',
      AUDIT_SCAN_MAX,
    );
    for (const { leaf } of items) {
      if (!leaf) continue;
      const e = leaf.event;
      const device = leaf.origin.kind === 'device' ? leaf.origin.device.deviceId : undefined;
      const id = e.type === 'release.installed' ? e.details.deviceId : (device ?? e.subject);
      if (id === undefined) continue;
      const name =
        e.type === 'model.loaded'
          ? `${e.details.name}${e.details.version !== undefined ? ` v${e.details.version}` : ''}`
          : e.type === 'release.installed'
            ? `${e.details.releaseId} ${e.details.version}`
            : '';
      const set = byDevice.get(id) ?? new Set<string>();
      if (set.size < 5) set.add(name);
      byDevice.set(id, set);
    }
    return byDevice;
  }

  private async latestVerdict(deviceId: string): Promise<DeviceSummary['attestation']> {
    const row = await this.attestation
      .selectFrom('attestation_state')
      .innerJoin('attestation_verdicts', 'attestation_verdicts.id', 'attestation_state.last_verdict_id')
      .select(['attestation_verdicts.pass', 'attestation_verdicts.received_at', 'attestation_state.trusted_until'])
      .where('attestation_state.device_id', '=', deviceId)
      .executeTakeFirst();
    return row && { pass: Boolean(row.pass), at: row.received_at, trustedUntil: row.trusted_until };
  }

  async attestationHistory(
    deviceId: string,
    limit = 20,
  ): Promise<Array<{ pass: boolean; at: string; reasons: string[] }>> {
    const rows = await this.attestation
      .selectFrom('attestation_verdicts')
      .select(['pass', 'received_at', 'reasons'])
      .where('device_id', '=', deviceId)
      .orderBy('received_at', 'desc')
      .limit(limit)
      .execute();
    return rows.map((r) => ({ pass: Boolean(r.pass), at: r.received_at, reasons: storedReasonCodes(r.reasons) }));
  }

  async checklistReport(deviceId: string): Promise<StoredChecklistReport | undefined> {
    return this.checklist?.latest(deviceId);
  }

  /** Review queue counts per device (the items themselves stay sealed to the review key). */
  async reviewCounts(): Promise<{
    total: number;
    bytes: number;
    oldest: string | undefined;
    byDevice: Map<string, number>;
  }> {
    const rows = await this.review
      .selectFrom('review_items')
      .select(['device_id', 'size', 'received_at'])
      .orderBy('received_at')
      .limit(100_000)
      .execute();
    const byDevice = new Map<string, number>();
    let bytes = 0;
    for (const r of rows) {
      byDevice.set(r.device_id, (byDevice.get(r.device_id) ?? 0) + 1);
      bytes += Number(r.size);
    }
    return { total: rows.length, bytes, oldest: rows[0]?.received_at, byDevice };
  }
}

export function failingChecks(
  report: ChecklistReport,
): ChecklistReport['controls'][number]['tests'][number]['results'] {
  return report.controls.flatMap((c) => c.tests.flatMap((t) => t.results.filter((r) => r.status === 'FAIL')));
}

/**
 * The reason codes of a stored verdict's reasons column (JSON written by the appraisal). A code that
 * is not a string is shown as JSON rather than converted with String(), which throws on values
 * such as {"toString":0}; a column that is not a JSON array shows no reasons.
 */
export function storedReasonCodes(json: string): string[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    return [];
  }
  if (!Array.isArray(parsed)) return [];
  return parsed.map((r: unknown) => {
    const code = typeof r === 'object' && r !== null && !Array.isArray(r) ? (r as { code?: unknown }).code : r;
    return typeof code === 'string' ? code : describeValue(code);
  });
}

/** Whether an entry is about `deviceId`: from its journal, or with the device as subject. */
export function isAboutDevice(leaf: LogLeaf, deviceId: string): boolean {
  return (
    (leaf.origin.kind === 'device' && leaf.origin.device.deviceId === deviceId) ||
    leaf.event.subject === deviceId ||
    ('deviceId' in leaf.event.details && leaf.event.details.deviceId === deviceId)
  );
}

/** Guard verdicts (flagged, rejected) per model per hour, for the guard activity chart. */
export function guardActivity(items: readonly AuditItem[]): {
  hours: string[];
  series: Array<{ model: string; flagged: number[]; rejected: number[] }>;
} {
  const buckets = new Map<string, Map<string, { flagged: number; rejected: number }>>();
  const hours = new Set<string>();
  for (const { leaf } of items) {
    const e = leaf?.event;
    if (!e || (e.type !== 'guard.flagged' && e.type !== 'guard.rejected')) continue;
    const hour = `${e.time.slice(0, 13)}:00Z`;
    hours.add(hour);
    const model = e.details.model ?? 'unnamed model';
    const perHour = buckets.get(model) ?? new Map<string, { flagged: number; rejected: number }>();
    const b = perHour.get(hour) ?? { flagged: 0, rejected: 0 };
    if (e.type === 'guard.flagged') b.flagged++;
    else b.rejected++;
    perHour.set(hour, b);
    buckets.set(model, perHour);
  }
  const sorted = [...hours].sort();
  return {
    hours: sorted,
    series: [...buckets.entries()].map(([model, perHour]) => ({
      model,
      flagged: sorted.map((h) => perHour.get(h)?.flagged ?? 0),
      rejected: sorted.map((h) => perHour.get(h)?.rejected ?? 0),
    })),
  };
}
