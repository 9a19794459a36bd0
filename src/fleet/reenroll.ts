/**
 * Retiring an enrollment before enrolling again. The device's audit journal lives in DIR/fleet
 * and is signed with the enrolled certificate's key; deleting DIR/fleet to re-enroll used to
 * delete the entries the control plane had not logged yet. Here the journal is forwarded with
 * the old credentials first; DIR/fleet is then moved aside (never deleted). If entries cannot be
 * delivered (server unreachable, certificate revoked), re-enrolling is refused unless the caller
 * asks to archive them: the directory is moved aside all the same and keeps them for
 * `edgeguard audit journal`.
 */
import { createPrivateKey } from 'node:crypto';
import { existsSync } from 'node:fs';
import { rename } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Journal, forwardJournal, journalSignerFromKey } from '../audit/index.ts';
import { EdgeguardError, fsError } from '../errors/index.ts';
import { FLEET_SUBDIR, deviceClient, loadDeviceCredential } from './enrollment.ts';

/** The journal's file name in DIR/fleet (the agent's default journal.path with upload.device). */
export const FLEET_JOURNAL_FILE = 'audit.journal';

export interface RetiredEnrollment {
  /** Where DIR/fleet went. */
  archivedTo: string;
  /** Journal entries the control plane had not logged (kept in archivedTo). */
  unforwarded: number;
}

/** Forward the old journal, then move DIR/fleet aside; refuse if entries would be left behind, unless `archive`. */
export async function retireEnrollment(deviceDir: string, o: { archive: boolean }): Promise<RetiredEnrollment> {
  const fleetDir = join(resolve(deviceDir), FLEET_SUBDIR);
  const journalPath = join(fleetDir, FLEET_JOURNAL_FILE);
  const { unforwarded, reason } = existsSync(journalPath)
    ? await forwardAll(deviceDir, journalPath)
    : { unforwarded: 0, reason: '' };
  if (unforwarded > 0 && !o.archive)
    throw new EdgeguardError(
      'EG_AUDIT_UNAVAILABLE',
      `${unforwarded} entries of ${journalPath} have not reached the control plane (${reason}); re-enrolling now would leave them behind. Let the agent forward them first, or pass --archive to move ${fleetDir} aside with them.`,
      { details: { unforwarded } },
    );
  const archivedTo = `${fleetDir}.retired-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  try {
    await rename(fleetDir, archivedTo);
  } catch (e) {
    throw fsError(e, fleetDir, 'move aside');
  }
  return { archivedTo, unforwarded };
}

/** Forward the journal with the enrolled credentials until the server has it all or it fails. */
async function forwardAll(deviceDir: string, journalPath: string): Promise<{ unforwarded: number; reason: string }> {
  const cred = await loadDeviceCredential(deviceDir);
  const key = createPrivateKey(cred.keyPem);
  const journal = await Journal.open(journalPath, journalSignerFromKey(key), key);
  const client = deviceClient(cred);
  let serverSeq = -1;
  try {
    for (;;) {
      const r = await forwardJournal(journal, client);
      serverSeq = r.serverSeq;
      if (r.serverSeq >= journal.lastSeq || r.sent === 0) break;
    }
    return { unforwarded: Math.max(0, journal.lastSeq - serverSeq), reason: 'the server did not log them all' };
  } catch (e) {
    const why = e instanceof EdgeguardError ? `${e.code}: ${e.message}` : String(e);
    return { unforwarded: Math.max(0, journal.lastSeq - serverSeq), reason: why };
  } finally {
    client.close();
  }
}
