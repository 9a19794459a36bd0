/** The size bound every log leaf obeys. */
import { EdgeguardError } from '../errors/index.ts';

/** tlog-tiles entry bundles prefix each entry with a u16 length, so a leaf is at most 65535 bytes. */
export const MAX_LEAF_BYTES = 65535;

export function checkLeafSize(leaf: Buffer): Buffer {
  if (leaf.length > MAX_LEAF_BYTES)
    throw new EdgeguardError(
      'EG_INPUT',
      `an audit entry is ${leaf.length} bytes; at most ${MAX_LEAF_BYTES} are accepted. Shorten its text fields.`,
    );
  return leaf;
}
