/**
 * The control plane's data-access layer: every read and write of devices, certificates and
 * enrollment challenges goes through here, the same on SQLite and PostgreSQL. Single-use values
 * (nonces, credential challenges) are consumed with one conditional UPDATE so that two replicas
 * racing on the same value cannot both win.
 */
import { EdgeguardError } from '../errors/index.ts';
import { openDatabase, type OpenStoreOptions, type StoreDialect } from './open.ts';
import { preparedQuery } from './prepared.ts';
import type {
  CertificateRole,
  CertificatesTable,
  ChallengeKind,
  DeviceStatus,
  DevicesTable,
  EnrollmentChallengesTable,
  StoreDb,
} from './schema.ts';

export type DeviceRecord = DevicesTable;
export type CertificateRecord = CertificatesTable;
export type ChallengeRecord = EnrollmentChallengesTable;

export type NewDevice = Omit<
  DevicesTable,
  'approved_at' | 'approved_by' | 'revoked_at' | 'tampered_at' | 'last_seen_at'
>;

export interface NewCertificate {
  serial: string;
  device_id: string | null;
  role: CertificateRole;
  subject: string;
  not_before: string;
  not_after: string;
  pem: string;
}

const now = (): string => new Date().toISOString();

/**
 * What authentication needs on every request, in one query: the certificate's revocation state
 * and, for a device certificate, the device record. Compiled once per handle (prepared.ts).
 */
const authLookupQuery = preparedQuery((db: StoreDb, serial: string) =>
  db
    .selectFrom('certificates as c')
    .leftJoin('devices as d', 'd.id', 'c.device_id')
    .select(['c.revoked_at as cert_revoked_at', 'c.serial as cert_serial'])
    .select([
      'd.id',
      'd.ek_pub_sha256',
      'd.ek_cert_pem',
      'd.ak_public',
      'd.ak_name',
      'd.binding_public',
      'd.key_provider',
      'd.status',
      'd.label',
      'd.csr_pem',
      'd.poll_token_sha256',
      'd.created_at',
      'd.approved_at',
      'd.approved_by',
      'd.revoked_at',
      'd.tampered_at',
      'd.last_seen_at',
    ])
    .where('c.serial', '=', serial),
);

export class Store {
  private constructor(
    readonly db: StoreDb,
    readonly dialect: StoreDialect,
    readonly where: string,
  ) {}

  static async open(opts: OpenStoreOptions): Promise<Store> {
    const { db, dialect, where } = await openDatabase(opts);
    return new Store(db, dialect, where);
  }

  async close(): Promise<void> {
    await this.db.destroy();
  }

  // ---- devices ----

  async insertDevice(device: NewDevice): Promise<DeviceRecord> {
    try {
      await this.db.insertInto('devices').values(device).execute();
    } catch (e) {
      if (isUniqueViolation(e)) {
        throw new EdgeguardError(
          'EG_EXISTS',
          'a device with this endorsement key is already enrolled; revoke and delete it before enrolling the TPM again.',
          { cause: e },
        );
      }
      throw e;
    }
    return (await this.getDevice(device.id))!;
  }

  async getDevice(id: string): Promise<DeviceRecord | undefined> {
    return this.db.selectFrom('devices').selectAll().where('id', '=', id).executeTakeFirst();
  }

  async getDeviceByEk(ekPubSha256: string): Promise<DeviceRecord | undefined> {
    return this.db.selectFrom('devices').selectAll().where('ek_pub_sha256', '=', ekPubSha256).executeTakeFirst();
  }

  async listDevices(filter: { status?: DeviceStatus | undefined } = {}): Promise<DeviceRecord[]> {
    let q = this.db.selectFrom('devices').selectAll();
    if (filter.status !== undefined) q = q.where('status', '=', filter.status);
    return q.orderBy('created_at').orderBy('id').execute();
  }

  /** pending -> approved. Returns the updated record, or undefined when the device was not pending. */
  async approveDevice(id: string, approvedBy: string): Promise<DeviceRecord | undefined> {
    const r = await this.db
      .updateTable('devices')
      .set({ status: 'approved', approved_at: now(), approved_by: approvedBy })
      .where('id', '=', id)
      .where('status', '=', 'pending')
      .executeTakeFirst();
    if (Number(r.numUpdatedRows) !== 1) return undefined;
    return this.getDevice(id);
  }

  /** Marks the device revoked and revokes every certificate it holds, in one transaction. */
  async revokeDevice(
    id: string,
    reason = 'cessationOfOperation',
  ): Promise<{ device: DeviceRecord; revokedSerials: string[] } | undefined> {
    return this.endDevice(id, 'revoked', reason);
  }

  /**
   * The device reported physical tampering (its journal's tamper.detected or device.locked): it is
   * marked `tampered` and every certificate it holds is revoked, in one transaction. Undefined when
   * the device is absent or already tampered or revoked.
   */
  async markDeviceTampered(id: string): Promise<{ device: DeviceRecord; revokedSerials: string[] } | undefined> {
    return this.endDevice(id, 'tampered', 'keyCompromise');
  }

  private async endDevice(
    id: string,
    status: 'revoked' | 'tampered',
    reason: string,
  ): Promise<{ device: DeviceRecord; revokedSerials: string[] } | undefined> {
    return this.db.transaction().execute(async (trx) => {
      const at = now();
      const r = await trx
        .updateTable('devices')
        .set(status === 'tampered' ? { status, revoked_at: at, tampered_at: at } : { status, revoked_at: at })
        .where('id', '=', id)
        .where('status', 'not in', ['revoked', 'tampered'])
        .executeTakeFirst();
      if (Number(r.numUpdatedRows) !== 1) return undefined;
      const certs = await trx
        .selectFrom('certificates')
        .select('serial')
        .where('device_id', '=', id)
        .where('revoked_at', 'is', null)
        .execute();
      await trx
        .updateTable('certificates')
        .set({ revoked_at: at, revocation_reason: reason })
        .where('device_id', '=', id)
        .where('revoked_at', 'is', null)
        .execute();
      const device = await trx.selectFrom('devices').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
      return { device, revokedSerials: certs.map((c) => c.serial) };
    });
  }

  /**
   * Forget a revoked (or tampered) device so that its TPM may enroll again. Its certificates stay
   * recorded (and revoked), so they remain in the CRL. Returns false when the device is absent or
   * still in service.
   */
  async deleteRevokedDevice(id: string): Promise<boolean> {
    const r = await this.db
      .deleteFrom('devices')
      .where('id', '=', id)
      .where('status', 'in', ['revoked', 'tampered'])
      .executeTakeFirst();
    return Number(r.numDeletedRows) === 1;
  }

  async touchDevice(id: string): Promise<void> {
    await this.db.updateTable('devices').set({ last_seen_at: now() }).where('id', '=', id).execute();
  }

  // ---- certificates ----

  async recordCertificate(cert: NewCertificate): Promise<void> {
    await this.db
      .insertInto('certificates')
      .values({ ...cert, issued_at: now(), revoked_at: null, revocation_reason: null })
      .execute();
  }

  async getCertificate(serial: string): Promise<CertificateRecord | undefined> {
    return this.db.selectFrom('certificates').selectAll().where('serial', '=', serial).executeTakeFirst();
  }

  async latestCertificateFor(deviceId: string): Promise<CertificateRecord | undefined> {
    return this.db
      .selectFrom('certificates')
      .selectAll()
      .where('device_id', '=', deviceId)
      .where('revoked_at', 'is', null)
      .orderBy('not_after', 'desc')
      .limit(1)
      .executeTakeFirst();
  }

  /** How many certificates a device was issued with notBefore at or after `since` (ISO 8601). */
  async certificatesIssuedSince(deviceId: string, since: string): Promise<number> {
    const r = await this.db
      .selectFrom('certificates')
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .where('device_id', '=', deviceId)
      .where('not_before', '>=', since)
      .executeTakeFirst();
    return Number(r?.n ?? 0);
  }

  /**
   * Serials of unrevoked device certificates that a newer certificate of the same device replaced
   * before `cutoff` (its notBefore, ISO 8601): renewed away, their overlap over.
   */
  async supersededCertificates(cutoff: string): Promise<string[]> {
    const rows = await this.db
      .selectFrom('certificates as old')
      .select('old.serial')
      .where('old.role', '=', 'device')
      .where('old.revoked_at', 'is', null)
      .where(({ exists, selectFrom }) =>
        exists(
          selectFrom('certificates as newer')
            .select('newer.serial')
            .whereRef('newer.device_id', '=', 'old.device_id')
            // Issue time, not notBefore: X.509 times have whole seconds, and a renewal can come
            // within the second its predecessor was issued.
            .whereRef('newer.issued_at', '>', 'old.issued_at')
            .where('newer.issued_at', '<=', cutoff),
        ),
      )
      .execute();
    return rows.map((r) => r.serial);
  }

  async revokeCertificate(serial: string, reason = 'unspecified'): Promise<boolean> {
    const r = await this.db
      .updateTable('certificates')
      .set({ revoked_at: now(), revocation_reason: reason })
      .where('serial', '=', serial)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /**
   * Whether a certificate may be used: it must be one we issued and recorded, and not revoked.
   * An unknown serial is refused too (fail closed: a certificate we have no record of is not ours).
   */
  async certificateStatus(serial: string): Promise<'good' | 'revoked' | 'unknown'> {
    const row = await this.db
      .selectFrom('certificates')
      .select(['revoked_at'])
      .where('serial', '=', serial)
      .executeTakeFirst();
    if (row === undefined) return 'unknown';
    return row.revoked_at === null ? 'good' : 'revoked';
  }

  /**
   * What authentication needs on every request, in one query: the certificate's revocation state
   * and, for a device certificate, the device record.
   */
  async authLookup(
    serial: string,
  ): Promise<{ status: 'good' | 'revoked' | 'unknown'; device: DeviceRecord | undefined }> {
    const [row] = await authLookupQuery(this.db, serial);
    if (row === undefined) return { status: 'unknown', device: undefined };
    const { cert_revoked_at, cert_serial: _s, ...d } = row;
    const device = d.id === null ? undefined : (d as DeviceRecord);
    return { status: cert_revoked_at === null ? 'good' : 'revoked', device };
  }

  async revokedCertificates(): Promise<Array<Pick<CertificateRecord, 'serial' | 'revoked_at' | 'revocation_reason'>>> {
    return this.db
      .selectFrom('certificates')
      .select(['serial', 'revoked_at', 'revocation_reason'])
      .where('revoked_at', 'is not', null)
      .orderBy('serial')
      .execute();
  }

  // ---- single-use challenges ----

  async createChallenge(c: {
    id: string;
    kind: ChallengeKind;
    value: string;
    payload?: string | null;
    ttlSeconds: number;
  }): Promise<ChallengeRecord> {
    const created = new Date();
    const row: ChallengeRecord = {
      id: c.id,
      kind: c.kind,
      value: c.value,
      payload: c.payload ?? null,
      created_at: created.toISOString(),
      expires_at: new Date(created.getTime() + c.ttlSeconds * 1000).toISOString(),
      used_at: null,
    };
    await this.db.insertInto('enrollment_challenges').values(row).execute();
    return row;
  }

  /**
   * Consume a challenge exactly once: returns it when this call marked it used, undefined when it
   * does not exist, is of another kind, has expired, or was already used (a replay).
   */
  async consumeChallenge(id: string, kind: ChallengeKind): Promise<ChallengeRecord | undefined> {
    const at = now();
    const r = await this.db
      .updateTable('enrollment_challenges')
      .set({ used_at: at })
      .where('id', '=', id)
      .where('kind', '=', kind)
      .where('used_at', 'is', null)
      .where('expires_at', '>', at)
      .executeTakeFirst();
    if (Number(r.numUpdatedRows) !== 1) return undefined;
    return this.db.selectFrom('enrollment_challenges').selectAll().where('id', '=', id).executeTakeFirst();
  }

  /** Delete challenges that expired more than `graceSeconds` ago; returns how many. */
  async pruneChallenges(graceSeconds = 3600): Promise<number> {
    const cutoff = new Date(Date.now() - graceSeconds * 1000).toISOString();
    const r = await this.db.deleteFrom('enrollment_challenges').where('expires_at', '<', cutoff).executeTakeFirst();
    return Number(r.numDeletedRows);
  }
}

function isUniqueViolation(e: unknown): boolean {
  const err = e as { code?: string } | undefined;
  // PostgreSQL unique_violation, SQLite constraint codes.
  return (
    err?.code === '23505' || err?.code === 'SQLITE_CONSTRAINT_UNIQUE' || err?.code === 'SQLITE_CONSTRAINT_PRIMARYKEY'
  );
}
