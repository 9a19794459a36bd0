/**
 * Chunked streaming AEAD in the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015),
 * laid out as Tink's AES-GCM-HKDF streaming and age's payload do:
 *
 *   per-file material = HKDF-SHA256(ikm = content key, salt = header salt,
 *                                   info = "edgeguard/egm/v1 stream" || 0x00 || suite id || SHA-256(header),
 *                                   L = 32 + 7)  ->  subkey (32) || nonce prefix (7)
 *   nonce(i, last)    = nonce prefix (7) || u32be(i) || (last ? 0x01 : 0x00)
 *   chunk i           = AEAD-Seal(subkey, nonce(i, last), plaintext_i, aad = SHA-256(header)) = ciphertext || tag(16)
 *
 * Binding the header digest into the subkey and the AAD makes any header edit fail the first chunk;
 * the counter in the nonce catches dropped, duplicated and reordered chunks; the last-chunk flag
 * catches truncation at a chunk boundary; a fresh salt per package gives each package its own
 * subkey, so a chunk spliced in from another package under the same content key fails too.
 */
import { createCipheriv, createDecipheriv, hkdfSync } from 'node:crypto';
import { EdgeguardError } from '../errors/index.ts';

export type CipherSuite = 'aes-256-gcm' | 'chacha20-poly1305';

export const CIPHER_SUITES: Record<CipherSuite, number> = { 'aes-256-gcm': 1, 'chacha20-poly1305': 2 };
export const TAG_BYTES = 16;
export const NONCE_PREFIX_BYTES = 7;
const INFO_LABEL = Buffer.from('edgeguard/egm/v1 stream\0', 'ascii');

export function cipherSuiteFromId(id: number): CipherSuite | undefined {
  for (const [name, value] of Object.entries(CIPHER_SUITES)) if (value === id) return name as CipherSuite;
  return undefined;
}

export function parseCipherSuite(name: string): CipherSuite {
  if (name in CIPHER_SUITES) return name as CipherSuite;
  throw new EdgeguardError('EG_USAGE', `unknown cipher "${name}"; choose aes-256-gcm or chacha20-poly1305.`);
}

/**
 * The per-file subkey and nonce prefix (layout above). Exported for the parallel chunk opener
 * (src/model/chunk-opener.ts), which builds nonce(i, last) the same way on worker threads. The
 * caller wipes both buffers when done.
 */
export function deriveStreamMaterial(
  suite: CipherSuite,
  contentKey: Uint8Array,
  salt: Uint8Array,
  headerDigest: Uint8Array,
): { key: Buffer; prefix: Buffer } {
  const info = Buffer.concat([INFO_LABEL, Buffer.from([CIPHER_SUITES[suite]]), headerDigest]);
  const okm = Buffer.from(hkdfSync('sha256', contentKey, salt, info, 32 + NONCE_PREFIX_BYTES));
  return { key: okm.subarray(0, 32), prefix: okm.subarray(32) };
}

export class ChunkCipher {
  private readonly key: Buffer;
  private readonly prefix: Buffer;
  private readonly nonce = Buffer.alloc(12);

  constructor(
    readonly suite: CipherSuite,
    contentKey: Uint8Array,
    salt: Uint8Array,
    private readonly headerDigest: Buffer,
  ) {
    ({ key: this.key, prefix: this.prefix } = deriveStreamMaterial(suite, contentKey, salt, headerDigest));
    this.prefix.copy(this.nonce, 0);
  }

  private nonceFor(index: number, last: boolean): Buffer {
    if (!Number.isInteger(index) || index < 0 || index > 0xffffffff) {
      throw new EdgeguardError('EG_FORMAT', `chunk index ${index} is outside the 32-bit counter.`);
    }
    this.nonce.writeUInt32BE(index, NONCE_PREFIX_BYTES);
    this.nonce[11] = last ? 1 : 0;
    return this.nonce;
  }

  /** Encrypt one chunk; returns ciphertext || tag. */
  seal(index: number, last: boolean, plaintext: Uint8Array): Buffer {
    const c = createCipheriv(this.suite as 'aes-256-gcm', this.key, this.nonceFor(index, last), {
      authTagLength: TAG_BYTES,
    });
    c.setAAD(this.headerDigest);
    const body = c.update(plaintext);
    const tail = c.final();
    return Buffer.concat([body, tail, c.getAuthTag()]);
  }

  /**
   * Decrypt and authenticate one chunk (ciphertext || tag). The plaintext is returned only after
   * the tag verifies; on failure the partial plaintext is wiped and EG_TAMPERED is thrown.
   */
  open(index: number, last: boolean, sealed: Uint8Array): Buffer {
    if (sealed.length < TAG_BYTES) throw tampered(index);
    const ct = sealed.subarray(0, sealed.length - TAG_BYTES);
    const tag = sealed.subarray(sealed.length - TAG_BYTES);
    const d = createDecipheriv(this.suite as 'aes-256-gcm', this.key, this.nonceFor(index, last), {
      authTagLength: TAG_BYTES,
    });
    d.setAAD(this.headerDigest);
    d.setAuthTag(tag);
    const plain = d.update(ct);
    try {
      d.final();
    } catch {
      plain.fill(0);
      throw tampered(index);
    }
    return plain;
  }

  /** Forget the derived key material. */
  destroy(): void {
    this.key.fill(0);
    this.prefix.fill(0);
    this.nonce.fill(0);
  }
}

function tampered(index: number): EdgeguardError {
  return new EdgeguardError(
    'EG_TAMPERED',
    `chunk ${index} failed authentication; the file was modified or truncated.`,
    {
      details: { chunk: index },
    },
  );
}
