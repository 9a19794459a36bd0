/**
 * KDFa (TCG TPM 2.0 Library Part 1, 11.4.10.2): NIST SP 800-108 counter-mode KDF with HMAC.
 *
 *   K(i) = HMAC_hash(key, [i]32 || label || 0x00 || contextU || contextV || [bits]32),  i = 1, 2, ...
 *
 * concatenated and truncated to `bits` (the spec masks the excess bits of the last byte; we only
 * ever ask for whole bytes). The 0x00 follows the label unless the label already ends in one.
 */
import { createHash, createHmac } from 'node:crypto';
import { EdgeguardError } from '../errors/index.ts';

export function kdfa(
  hash: string,
  key: Uint8Array,
  label: string,
  contextU: Uint8Array,
  contextV: Uint8Array,
  bits: number,
): Buffer {
  if (bits <= 0 || bits % 8 !== 0)
    throw new EdgeguardError('EG_INTERNAL', `KDFa asked for ${bits} bits; only whole bytes are supported.`);
  const labelBytes = Buffer.from(label, 'latin1');
  const terminatedLabel =
    labelBytes.length > 0 && labelBytes[labelBytes.length - 1] === 0
      ? labelBytes
      : Buffer.concat([labelBytes, Buffer.from([0])]);
  const bitsBe = Buffer.alloc(4);
  bitsBe.writeUInt32BE(bits);
  const out: Buffer[] = [];
  let have = 0;
  for (let i = 1; have < bits / 8; i++) {
    const counter = Buffer.alloc(4);
    counter.writeUInt32BE(i);
    const block = createHmac(hash, key)
      .update(counter)
      .update(terminatedLabel)
      .update(contextU)
      .update(contextV)
      .update(bitsBe)
      .digest();
    out.push(block);
    have += block.length;
  }
  return Buffer.concat(out).subarray(0, bits / 8);
}

/**
 * KDFe (TCG TPM 2.0 Library Part 1, 11.4.10.3): the SP 800-56A concatenation KDF used to turn an
 * ECDH shared secret Z into a seed.
 *
 *   K(i) = H([i]32 || Z || label || 0x00 || partyUInfo || partyVInfo),  i = 1, 2, ...
 */
export function kdfe(
  hash: string,
  z: Uint8Array,
  label: string,
  partyU: Uint8Array,
  partyV: Uint8Array,
  bits: number,
): Buffer {
  if (bits <= 0 || bits % 8 !== 0)
    throw new EdgeguardError('EG_INTERNAL', `KDFe asked for ${bits} bits; only whole bytes are supported.`);
  const labelBytes = Buffer.from(label, 'latin1');
  const terminatedLabel =
    labelBytes.length > 0 && labelBytes[labelBytes.length - 1] === 0
      ? labelBytes
      : Buffer.concat([labelBytes, Buffer.from([0])]);
  const out: Buffer[] = [];
  let have = 0;
  for (let i = 1; have < bits / 8; i++) {
    const counter = Buffer.alloc(4);
    counter.writeUInt32BE(i);
    const block = createHash(hash)
      .update(counter)
      .update(z)
      .update(terminatedLabel)
      .update(partyU)
      .update(partyV)
      .digest();
    out.push(block);
    have += block.length;
  }
  return Buffer.concat(out).subarray(0, bits / 8);
}
