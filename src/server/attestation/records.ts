/**
 * Reads and writes of the attestation tables (created by src/store/migrations/attestation.ts), the
 * same on SQLite and PostgreSQL. A nonce is spent with one conditional UPDATE, so two replicas
 * racing on it cannot both accept it; the silence of a device is recorded the same way, once.
 * The writes of each appraisal (nonce issued, nonce spent, verdict with the next round's nonce) go
 * through a group commit: concurrent appraisals share a commit, each still durable before its
 * caller goes on.
 */
import type { Kysely, Transaction } from 'kysely';
import type { QuoteClock } from '../../attest/index.ts';
import { GroupCommit, preparedQuery, type StoreDb } from '../../store/index.ts';

export type AttestationTables = {
  attestation_policies: { sha256: string; label: string; yaml: string; created_at: string };
  attestation_assignments: {
    scope: 'device' | 'group';
    target: string;
    policy_sha256: string;
    assigned_by: string;
    assigned_at: string;
  };
  attestation_device_groups: { device_id: string; group_name: string };
  attestation_nonces: {
    nonce: string;
    device_id: string;
    created_at: string;
    expires_at: string;
    used_at: string | null;
  };
  attestation_verdicts: {
    id: string;
    device_id: string;
    pass: number;
    reasons: string;
    policy_sha256: string | null;
    received_at: string;
    /** JSON array of { code, detail }: what happened since the last accepted quote (a reboot). */
    events: string | null;
  };
  attestation_state: {
    device_id: string;
    last_verdict_id: string;
    trusted_until: string | null;
    silence_recorded_at: string | null;
    /** JSON { clock (decimal string), resetCount, restartCount } of the last accepted quote. */
    quote_clock: string | null;
  };
};

export type VerdictRow = AttestationTables['attestation_verdicts'];
export type StateRow = AttestationTables['attestation_state'];
export type NonceOutcome = 'accepted' | 'unknown' | 'other-device' | 'replayed' | 'expired';

type AttestationDb = Kysely<AttestationTables>;

/**
 * The sha256 of the device's own policy and of its group's (the caller prefers the device's). One
 * query, without the YAML; compiled once per handle (src/store/prepared.ts), as it runs on every push.
 */
const assignedPolicyQuery = preparedQuery((db: AttestationDb, deviceId: string) =>
  db
    .selectFrom('attestation_assignments')
    .select(['scope', 'policy_sha256'])
    .where((eb) =>
      eb.or([
        eb.and([eb('scope', '=', 'device'), eb('target', '=', deviceId)]),
        eb.and([
          eb('scope', '=', 'group'),
          eb(
            'target',
            'in',
            eb.selectFrom('attestation_device_groups').select('group_name').where('device_id', '=', deviceId),
          ),
        ]),
      ]),
    ),
);

const lastQuoteClockQuery = preparedQuery((db: AttestationDb, deviceId: string) =>
  db.selectFrom('attestation_state').select('quote_clock').where('device_id', '=', deviceId),
);

export class AttestationRecords {
  private readonly db: Kysely<AttestationTables>;
  private readonly writes: GroupCommit<AttestationTables>;

  constructor(store: StoreDb) {
    this.db = store.withTables<AttestationTables>() as unknown as Kysely<AttestationTables>;
    this.writes = new GroupCommit(this.db);
  }

  async putPolicy(p: { sha256: string; label: string; yaml: string }): Promise<void> {
    await this.db
      .insertInto('attestation_policies')
      .values({ ...p, created_at: new Date().toISOString() })
      .onConflict((oc) => oc.column('sha256').doNothing())
      .execute();
  }

  async assign(scope: 'device' | 'group', target: string, policySha256: string, by: string): Promise<void> {
    const row = { scope, target, policy_sha256: policySha256, assigned_by: by, assigned_at: new Date().toISOString() };
    await this.db
      .insertInto('attestation_assignments')
      .values(row)
      .onConflict((oc) =>
        oc.columns(['scope', 'target']).doUpdateSet({
          policy_sha256: policySha256,
          assigned_by: by,
          assigned_at: row.assigned_at,
        }),
      )
      .execute();
  }

  async setGroup(deviceId: string, group: string): Promise<void> {
    await this.db
      .insertInto('attestation_device_groups')
      .values({ device_id: deviceId, group_name: group })
      .onConflict((oc) => oc.column('device_id').doUpdateSet({ group_name: group }))
      .execute();
  }

  /**
   * The sha256 of the device's own policy, else its group's; undefined when neither is assigned.
   * One query, without the YAML: the caller keeps parsed policies by their content hash.
   */
  async assignedPolicy(deviceId: string): Promise<string | undefined> {
    const rows = await assignedPolicyQuery(this.db, deviceId);
    return (rows.find((r) => r.scope === 'device') ?? rows[0])?.policy_sha256;
  }

  async policyYaml(sha256: string): Promise<string | undefined> {
    const row = await this.db
      .selectFrom('attestation_policies')
      .select('yaml')
      .where('sha256', '=', sha256)
      .executeTakeFirst();
    return row?.yaml;
  }

  async createNonce(nonce: string, deviceId: string, ttlSeconds: number): Promise<string> {
    const row = nonceRow(nonce, deviceId, ttlSeconds);
    await this.writes.run((trx) => trx.insertInto('attestation_nonces').values(row).execute());
    return row.expires_at;
  }

  /** Spend the nonce for this device, or say why it cannot be spent. */
  async spendNonce(nonce: string, deviceId: string): Promise<NonceOutcome> {
    const now = new Date().toISOString();
    const r = await this.writes.run((trx) =>
      trx
        .updateTable('attestation_nonces')
        .set({ used_at: now })
        .where('nonce', '=', nonce)
        .where('device_id', '=', deviceId)
        .where('used_at', 'is', null)
        .where('expires_at', '>', now)
        .executeTakeFirst(),
    );
    if (Number(r.numUpdatedRows) === 1) return 'accepted';
    const row = await this.db
      .selectFrom('attestation_nonces')
      .selectAll()
      .where('nonce', '=', nonce)
      .executeTakeFirst();
    if (!row) return 'unknown';
    if (row.device_id !== deviceId) return 'other-device';
    return row.used_at !== null ? 'replayed' : 'expired';
  }

  /** Nonces expired more than `graceSeconds` ago are of no use to anyone. */
  async pruneNonces(graceSeconds = 3600): Promise<void> {
    const before = new Date(Date.now() - graceSeconds * 1000).toISOString();
    await this.db.deleteFrom('attestation_nonces').where('expires_at', '<', before).execute();
  }

  /**
   * Record a verdict; `acceptedClock` (when given) becomes the device's last accepted quote clock.
   * `next` is the nonce of the device's next round, issued in the same transaction as the verdict.
   * Written by the group commit here, or handed (`work`) to another transaction on this store: the
   * audit log's, so that the verdict and its audit event share one commit.
   */
  verdictWrite(
    v: VerdictRow,
    trustedUntil: string | null,
    acceptedClock?: QuoteClock,
    next?: { nonce: string; ttlSeconds: number },
  ): { work: (trx: Transaction<unknown>) => Promise<void>; alone: () => Promise<void>; nextExpiresAt?: string } {
    const nextRow = next ? nonceRow(next.nonce, v.device_id, next.ttlSeconds) : undefined;
    const state = {
      last_verdict_id: v.id,
      trusted_until: trustedUntil,
      silence_recorded_at: null,
      ...(acceptedClock ? { quote_clock: encodeQuoteClock(acceptedClock) } : {}),
    };
    const write = async (trx: Transaction<AttestationTables>) => {
      await trx.insertInto('attestation_verdicts').values(v).execute();
      await trx
        .insertInto('attestation_state')
        .values({ device_id: v.device_id, ...state })
        .onConflict((oc) => oc.column('device_id').doUpdateSet(state))
        .execute();
      if (nextRow) await trx.insertInto('attestation_nonces').values(nextRow).execute();
    };
    return {
      // The store's transaction, whose tables include these (src/store/migrations/attestation.ts).
      work: (trx) => write(trx as unknown as Transaction<AttestationTables>),
      alone: () => this.writes.run(write),
      ...(nextRow ? { nextExpiresAt: nextRow.expires_at } : {}),
    };
  }

  /** `verdictWrite` committed by this group commit alone. */
  async recordVerdict(v: VerdictRow, trustedUntil: string | null, acceptedClock?: QuoteClock): Promise<void> {
    await this.verdictWrite(v, trustedUntil, acceptedClock).alone();
  }

  async current(deviceId: string): Promise<{ state: StateRow; verdict: VerdictRow } | undefined> {
    const state = await this.db
      .selectFrom('attestation_state')
      .selectAll()
      .where('device_id', '=', deviceId)
      .executeTakeFirst();
    if (!state) return undefined;
    const verdict = await this.db
      .selectFrom('attestation_verdicts')
      .selectAll()
      .where('id', '=', state.last_verdict_id)
      .executeTakeFirstOrThrow();
    return { state, verdict };
  }

  /** The clock of the device's last accepted quote, if it ever had one. */
  async lastQuoteClock(deviceId: string): Promise<QuoteClock | undefined> {
    const [row] = await lastQuoteClockQuery(this.db, deviceId);
    return row?.quote_clock ? decodeQuoteClock(row.quote_clock) : undefined;
  }

  /** Devices whose window ran out at `at` and whose silence is not yet recorded. */
  async silentSince(at: Date): Promise<StateRow[]> {
    return this.db
      .selectFrom('attestation_state')
      .selectAll()
      .where('trusted_until', 'is not', null)
      .where('trusted_until', '<=', at.toISOString())
      .where('silence_recorded_at', 'is', null)
      .execute();
  }

  /** True for the one replica that records this window's silence. */
  async markSilent(deviceId: string, trustedUntil: string, at: Date): Promise<boolean> {
    const r = await this.db
      .updateTable('attestation_state')
      .set({ silence_recorded_at: at.toISOString() })
      .where('device_id', '=', deviceId)
      .where('trusted_until', '=', trustedUntil)
      .where('silence_recorded_at', 'is', null)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }
}

/** A fresh, unused nonce row for `deviceId`, expiring `ttlSeconds` from now. */
function nonceRow(nonce: string, deviceId: string, ttlSeconds: number): AttestationTables['attestation_nonces'] {
  const now = Date.now();
  return {
    nonce,
    device_id: deviceId,
    created_at: new Date(now).toISOString(),
    expires_at: new Date(now + ttlSeconds * 1000).toISOString(),
    used_at: null,
  };
}

function encodeQuoteClock(c: QuoteClock): string {
  return JSON.stringify({ clock: c.clock.toString(), resetCount: c.resetCount, restartCount: c.restartCount });
}

function decodeQuoteClock(text: string): QuoteClock {
  const c = JSON.parse(text) as { clock: string; resetCount: number; restartCount: number };
  return { clock: BigInt(c.clock), resetCount: c.resetCount, restartCount: c.restartCount };
}
