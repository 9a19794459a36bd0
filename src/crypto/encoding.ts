/** Small byte helpers shared by the crypto and format code. */
import { createHash } from 'node:crypto';

export function sha256(...parts: Uint8Array[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

export function b64url(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64url');
}

/** Strict base64url decode: rejects characters outside the alphabet and padding. */
export function fromB64url(text: string): Buffer | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return undefined;
  return Buffer.from(text, 'base64url');
}

/**
 * Strict standard base64 decode (with padding), as DSSE and signed notes use: the text must be
 * exactly the canonical encoding of what it decodes to (RFC 4648 section 3.5: no characters
 * outside the alphabet, no missing padding, zero pad bits). Node's decoder skips what it does
 * not understand, so re-encoding and comparing is the check; it is native code, some ten times
 * faster than a regular expression on a DSSE payload of tens of KiB.
 */
export function fromB64(text: string): Buffer | undefined {
  const bytes = Buffer.from(text, 'base64');
  return bytes.toString('base64') === text ? bytes : undefined;
}

/** Overwrite secret bytes in place once they are no longer needed. */
export function wipe(...buffers: Array<Uint8Array | undefined>): void {
  for (const b of buffers) b?.fill(0);
}
