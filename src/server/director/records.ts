/**
 * Reads and writes of the director's tables (src/store/migrations/release.ts), the same on SQLite
 * and PostgreSQL. Device groups are the attestation module's (attestation_device_groups): one
 * notion of group for boot policies and releases. A halt and a nonce are single conditional
 * UPDATEs, so replicas racing on them cannot both succeed.
 */
import { sql, type Kysely } from 'kysely';
import type { StoreDb } from '../../store/index.ts';

export type AssignmentState = 'active' | 'halted';

export type DirectorTables = {
  release_assignments: {
    id: string;
    release_name: string;
    version: number;
    target_path: string;
    scope: 'device' | 'group';
    target: string;
    canary_percent: number | null;
    max_failures: number;
    state: AssignmentState;
    assigned_by: string;
    assigned_at: string;
    halted_at: string | null;
    halt_reason: string | null;
  };
  release_canary_members: { assignment_id: string; device_id: string };
  release_content_keys: { release_name: string; version: number; kid: string; sealed: string; stored_at: string };
  release_director_versions: { device_id: string; version: number; issued_at: string };
  release_report_nonces: { nonce: string; device_id: string; expires_at: string; used_at: string | null };
  release_reports: {
    id: string;
    device_id: string;
    release_name: string;
    version: number;
    status: 'installed' | 'failed';
    detail: string | null;
    assignment_id: string | null;
    envelope: string;
    received_at: string;
  };
  attestation_device_groups: { device_id: string; group_name: string };
};

export type AssignmentRow = DirectorTables['release_assignments'];
export type ReportRow = DirectorTables['release_reports'];
export type ContentKeyRow = DirectorTables['release_content_keys'];

export class DirectorRecords {
  private readonly db: Kysely<DirectorTables>;

  constructor(store: StoreDb) {
    this.db = store.withTables<DirectorTables>() as unknown as Kysely<DirectorTables>;
  }

  async insertAssignment(row: AssignmentRow, canaryDevices: string[]): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      await trx.insertInto('release_assignments').values(row).execute();
      for (const device_id of canaryDevices)
        await trx.insertInto('release_canary_members').values({ assignment_id: row.id, device_id }).execute();
    });
  }

  async groupOf(deviceId: string): Promise<string | undefined> {
    const r = await this.db
      .selectFrom('attestation_device_groups')
      .select('group_name')
      .where('device_id', '=', deviceId)
      .executeTakeFirst();
    return r?.group_name;
  }

  async groupMembers(group: string): Promise<string[]> {
    const rows = await this.db
      .selectFrom('attestation_device_groups')
      .select('device_id')
      .where('group_name', '=', group)
      .orderBy('device_id')
      .execute();
    return rows.map((r) => r.device_id);
  }

  /** Assignments naming this device or its group, newest first. */
  async assignmentsFor(deviceId: string, group: string | undefined): Promise<AssignmentRow[]> {
    return this.db
      .selectFrom('release_assignments')
      .selectAll()
      .where((eb) =>
        eb.or([
          eb.and([eb('scope', '=', 'device'), eb('target', '=', deviceId)]),
          ...(group !== undefined ? [eb.and([eb('scope', '=', 'group'), eb('target', '=', group)])] : []),
        ]),
      )
      .orderBy('assigned_at', 'desc')
      .orderBy('id', 'desc')
      .execute();
  }

  /** The newest assignment time on record: a new one is made later than it, so "newest" is never a tie. */
  async latestAssignedAt(): Promise<string | undefined> {
    const r = await this.db
      .selectFrom('release_assignments')
      .select('assigned_at')
      .orderBy('assigned_at', 'desc')
      .limit(1)
      .executeTakeFirst();
    return r?.assigned_at;
  }

  async listAssignments(release?: string): Promise<AssignmentRow[]> {
    let q = this.db.selectFrom('release_assignments').selectAll();
    if (release !== undefined) q = q.where('release_name', '=', release);
    return q.orderBy('assigned_at', 'desc').orderBy('id', 'desc').execute();
  }

  async canaryMembers(assignmentId: string): Promise<string[]> {
    const rows = await this.db
      .selectFrom('release_canary_members')
      .select('device_id')
      .where('assignment_id', '=', assignmentId)
      .orderBy('device_id')
      .execute();
    return rows.map((r) => r.device_id);
  }

  /** True for the one caller that moved the assignment from active to halted. */
  async halt(id: string, reason: string): Promise<boolean> {
    const r = await this.db
      .updateTable('release_assignments')
      .set({ state: 'halted', halted_at: new Date().toISOString(), halt_reason: reason })
      .where('id', '=', id)
      .where('state', '=', 'active')
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async putContentKey(row: ContentKeyRow): Promise<void> {
    await this.db
      .insertInto('release_content_keys')
      .values(row)
      .onConflict((oc) => oc.columns(['release_name', 'version']).doNothing())
      .execute();
  }

  async contentKey(release: string, version: number): Promise<ContentKeyRow | undefined> {
    return this.db
      .selectFrom('release_content_keys')
      .selectAll()
      .where('release_name', '=', release)
      .where('version', '=', version)
      .executeTakeFirst();
  }

  /** The next director metadata version for this device: one more than any issued before. */
  async nextDirectorVersion(deviceId: string): Promise<number> {
    const issued_at = new Date().toISOString();
    const r = await this.db
      .insertInto('release_director_versions')
      .values({ device_id: deviceId, version: 1, issued_at })
      .onConflict((oc) =>
        oc.column('device_id').doUpdateSet({ version: sql`release_director_versions.version + 1`, issued_at }),
      )
      .returning('version')
      .executeTakeFirstOrThrow();
    return Number(r.version);
  }

  async createNonce(nonce: string, deviceId: string, ttlSeconds: number): Promise<string> {
    const expires_at = new Date(Date.now() + ttlSeconds * 1000).toISOString();
    await this.db
      .insertInto('release_report_nonces')
      .values({ nonce, device_id: deviceId, expires_at, used_at: null })
      .execute();
    return expires_at;
  }

  async spendNonce(nonce: string, deviceId: string): Promise<boolean> {
    const now = new Date().toISOString();
    const r = await this.db
      .updateTable('release_report_nonces')
      .set({ used_at: now })
      .where('nonce', '=', nonce)
      .where('device_id', '=', deviceId)
      .where('used_at', 'is', null)
      .where('expires_at', '>', now)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async pruneNonces(): Promise<void> {
    await this.db.deleteFrom('release_report_nonces').where('expires_at', '<', new Date().toISOString()).execute();
  }

  async insertReport(row: ReportRow): Promise<void> {
    await this.db.insertInto('release_reports').values(row).execute();
  }

  async reports(release?: string): Promise<ReportRow[]> {
    let q = this.db.selectFrom('release_reports').selectAll();
    if (release !== undefined) q = q.where('release_name', '=', release);
    return q.orderBy('received_at', 'asc').orderBy('id', 'asc').execute();
  }

  /** Devices that reported a failed install of this assignment (each counted once). */
  async failedDevices(assignmentId: string): Promise<string[]> {
    const rows = await this.db
      .selectFrom('release_reports')
      .select('device_id')
      .distinct()
      .where('assignment_id', '=', assignmentId)
      .where('status', '=', 'failed')
      .execute();
    return rows.map((r) => r.device_id);
  }
}
