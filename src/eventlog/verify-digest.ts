/**
 * go-attestation's warning, taken as the rule here: an event's type and data are not covered by the
 * PCRs, only its digests are. So an event means something only when its data hashes to the digest
 * it logs, in every bank; an event whose label claims a digest rule that its data does not meet has
 * been relabelled or edited.
 */
import { HASH_ALGS, TPM_ALG } from '../tpm/index.ts';
import { digestOf } from './digest.ts';
import { EV } from './event-types.ts';
import type { LogEvent } from './parse.ts';

/** Types whose digest the profile defines as the hash of the event data. */
const DATA_DIGEST_TYPES: number[] = [
  EV.EFI_VARIABLE_DRIVER_CONFIG,
  EV.EFI_VARIABLE_AUTHORITY,
  EV.SEPARATOR,
  EV.EFI_ACTION,
];

/** True when `measured` (the event data, or the part of it the profile says is hashed) hashes to every digest. */
export function digestsMatch(event: LogEvent, measured: Uint8Array = event.data): boolean {
  return event.digests.every(({ alg, digest }) => {
    const hash = HASH_ALGS[alg];
    return hash !== undefined && digestOf(hash.node, measured).equals(digest);
  });
}

/** The SHA-256 digest of an event if the log has that bank, else the first bank's; hex. */
export function eventDigestHex(event: LogEvent): string {
  const d = event.digests.find((x) => x.alg === TPM_ALG.SHA256) ?? event.digests[0]!;
  return d.digest.toString('hex');
}

/**
 * An event labelled with a type whose digest is the hash of its data, whose data does not hash to
 * it, claims a meaning the PCRs do not back: an image relabelled as an action, or edited data.
 */
export function claimsUnbackedDigest(event: LogEvent, backed?: boolean): boolean {
  return DATA_DIGEST_TYPES.includes(event.type) && !(backed ?? digestsMatch(event));
}
