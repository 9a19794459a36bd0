/**
 * go-attestation's warning, taken as the rule here: an event's type and data are not covered by the
 * PCRs, only its digests are. So an event means something only when its data hashes to the digest
 * it logs, in every bank; an event whose label claims a digest rule that its data does not meet has
 * been relabelled or edited.
 */
import { createHash } from 'node:crypto';
import { HASH_ALGS, TPM_ALG } from '../tpm/index.ts';
import type { LogEvent } from './parse.ts';

/** True when `measured` (the event data, or the part of it the profile says is hashed) hashes to every digest. */
export function digestsMatch(event: LogEvent, measured: Uint8Array = event.data): boolean {
  return event.digests.every(({ alg, digest }) => {
    const hash = HASH_ALGS[alg];
    return hash !== undefined && createHash(hash.node).update(measured).digest().equals(digest);
  });
}

/** The SHA-256 digest of an event if the log has that bank, else the first bank's; hex. */
export function eventDigestHex(event: LogEvent): string {
  const d = event.digests.find((x) => x.alg === TPM_ALG.SHA256) ?? event.digests[0]!;
  return d.digest.toString('hex');
}
