/**
 * One-shot digests for the log's many small inputs (an extend, an event's data, a signature-list
 * entry): `crypto.hash` (Node 20.12 and later) skips the Hash object that `createHash` builds for
 * each, which was a third of the CPU of parsing, replaying and checking a ~100-event log. Older
 * Node 20 releases get `createHash`; the bytes are the same.
 */
import * as crypto from 'node:crypto';

type OneShot = (algorithm: string, data: Uint8Array, outputEncoding: 'buffer') => Buffer;
const oneShot = (crypto as unknown as { hash?: OneShot }).hash;

/** The digest of `data` with a Node hash name (sha1, sha256, ...). */
export function digestOf(algorithm: string, data: Uint8Array): Buffer {
  return oneShot ? oneShot(algorithm, data, 'buffer') : crypto.createHash(algorithm).update(data).digest();
}
