/**
 * A dashboard sign-in link made from the server's data directory (`edgeguard admin ui-login
 * --data DATA`), for whoever holds the directory and no admin certificate: written to the
 * server's own store and logged (admin.action ui.link_issued) in its audit log, as admin-cert.ts
 * does for certificates. A link the log cannot show is not handed out.
 */
import { join } from 'node:path';
import { AuditLog, LOG_PUB_FILE, readLogVerifierKey } from '../../audit/index.ts';
import { EdgeguardError } from '../../errors/index.ts';
import { openServerStore } from '../server-config.ts';
import { createUiLoginLink, type UiLoginLink } from './sessions.ts';

export async function issueUiLoginLinkOffline(o: {
  dataDir: string;
  db?: string | undefined;
  serverUrl: string;
  admin: string;
  issuedBy: string;
}): Promise<UiLoginLink> {
  const store = await openServerStore({ dataDir: o.dataDir, db: o.db });
  try {
    const verifier = await readLogVerifierKey(join(o.dataDir, LOG_PUB_FILE));
    const log = await AuditLog.open(store, { verifier, checkpointIntervalMs: 0 });
    try {
      await log.append({
        type: 'admin.action',
        time: new Date().toISOString(),
        actor: { kind: 'operator', id: o.issuedBy },
        outcome: 'success',
        details: { action: 'ui.link_issued', target: o.admin, detail: 'from the data directory' },
      });
    } catch (e) {
      throw new EdgeguardError(
        'EG_AUDIT_UNAVAILABLE',
        `the sign-in link could not be logged (${(e as Error).message}); none was issued. Fix the audit store and try again.`,
        { cause: e },
      );
    } finally {
      await log.close();
    }
    return await createUiLoginLink(store, { serverUrl: o.serverUrl, admin: o.admin });
  } finally {
    await store.close();
  }
}
