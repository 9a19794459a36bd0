/**
 * An admin certificate issued outside the running server (`edgeguard admin cert --data DATA`):
 * recorded in the server's own store (server-config.ts), since the server refuses serials it has
 * no record of, and logged as `cert.issued` in the same audit log the server appends to (several
 * processes may append: each batch takes the log's lock). A certificate the log cannot show is not
 * handed out: if the event cannot be appended, the certificate is revoked again and the command fails.
 */
import { join } from 'node:path';
import { AuditLog, LOG_PUB_FILE, readLogVerifierKey } from '../audit/index.ts';
import { EdgeguardError } from '../errors/index.ts';
import type { IssuedCertificate } from '../pki/index.ts';
import { openServerStore } from './server-config.ts';

export async function recordAdminCertificate(
  o: { dataDir: string; db?: string | undefined },
  issued: IssuedCertificate,
  issuedBy: string,
): Promise<void> {
  const store = await openServerStore({ dataDir: o.dataDir, db: o.db });
  try {
    const verifier = await readLogVerifierKey(join(o.dataDir, LOG_PUB_FILE));
    await store.recordCertificate({
      serial: issued.serial,
      device_id: null,
      role: 'admin',
      subject: issued.subject,
      not_before: issued.notBefore.toISOString(),
      not_after: issued.notAfter.toISOString(),
      pem: issued.chainPem,
    });
    const log = await AuditLog.open(store, { verifier, checkpointIntervalMs: 0 });
    try {
      await log.append({
        type: 'cert.issued',
        time: new Date().toISOString(),
        actor: { kind: 'operator', id: issuedBy },
        subject: issued.serial,
        outcome: 'success',
        details: {
          serial: issued.serial,
          role: 'admin',
          subjectDn: issued.subject,
          notAfter: issued.notAfter.toISOString(),
        },
      });
    } catch (e) {
      await store.revokeCertificate(issued.serial, 'cessationOfOperation');
      throw new EdgeguardError(
        'EG_AUDIT_UNAVAILABLE',
        `the admin certificate could not be logged (${(e as Error).message}); it was revoked again. Fix the audit store and issue it anew.`,
        { cause: e },
      );
    } finally {
      await log.close();
    }
  } finally {
    await store.close();
  }
}
