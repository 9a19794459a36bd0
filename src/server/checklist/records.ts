/**
 * The latest checklist report of each device (table created by src/store/migrations/checklist.ts),
 * the same on SQLite and PostgreSQL. This is also what the dashboard reads: `latest(deviceId)` for
 * a device page, `summaries()` for the fleet overview.
 */
import type { Kysely } from 'kysely';
import type { StoreDb } from '../../store/index.ts';

type ChecklistTables = {
  checklist_reports: {
    device_id: string;
    envelope: string;
    envelope_sha256: string;
    score: number;
    failing: string;
    totals: string;
    generated_at: string;
    received_at: string;
  };
};

export interface ChecklistSummary {
  deviceId: string;
  score: number;
  failing: string[];
  totals: Record<string, number>;
  generatedAt: string;
  receivedAt: string;
  envelopeSha256: string;
}

export interface StoredChecklist extends ChecklistSummary {
  /** The DSSE envelope text exactly as stored. */
  envelope: string;
}

type Row = ChecklistTables['checklist_reports'];

const summaryOf = (r: Omit<Row, 'envelope'>): ChecklistSummary => ({
  deviceId: r.device_id,
  score: Number(r.score),
  failing: JSON.parse(r.failing) as string[],
  totals: JSON.parse(r.totals) as Record<string, number>,
  generatedAt: r.generated_at,
  receivedAt: r.received_at,
  envelopeSha256: r.envelope_sha256,
});

export class ChecklistRecords {
  private readonly db: Kysely<ChecklistTables>;

  constructor(store: StoreDb) {
    this.db = store.withTables<ChecklistTables>() as unknown as Kysely<ChecklistTables>;
  }

  /** Keep `report` as the device's latest (one row per device, replaced by each upload). */
  async put(r: StoredChecklist): Promise<void> {
    const row: Row = {
      device_id: r.deviceId,
      envelope: r.envelope,
      envelope_sha256: r.envelopeSha256,
      score: r.score,
      failing: JSON.stringify(r.failing),
      totals: JSON.stringify(r.totals),
      generated_at: r.generatedAt,
      received_at: r.receivedAt,
    };
    const { device_id: _, ...rest } = row;
    await this.db
      .insertInto('checklist_reports')
      .values(row)
      .onConflict((oc) => oc.column('device_id').doUpdateSet(rest))
      .execute();
  }

  async latest(deviceId: string): Promise<StoredChecklist | undefined> {
    const r = await this.db
      .selectFrom('checklist_reports')
      .selectAll()
      .where('device_id', '=', deviceId)
      .executeTakeFirst();
    return r ? { ...summaryOf(r), envelope: r.envelope } : undefined;
  }

  /** Every device's latest report, without the envelopes. */
  async summaries(): Promise<ChecklistSummary[]> {
    const rows = await this.db
      .selectFrom('checklist_reports')
      .select(['device_id', 'envelope_sha256', 'score', 'failing', 'totals', 'generated_at', 'received_at'])
      .orderBy('device_id')
      .execute();
    return rows.map(summaryOf);
  }
}
