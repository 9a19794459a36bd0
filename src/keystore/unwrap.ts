/** The checks both providers make around their private-key operation, and the keys they hand out. */
import { contentKeyFromBytes, wipe, type ContentKey } from '../crypto/index.ts';
import { EdgeguardError } from '../errors/index.ts';
import { parseWrappedKeyFile } from './wrapped-key.ts';

export async function unwrapChecked(
  wrappedFileText: string,
  bindingThumbprint: string,
  decrypt: (ciphertext: Buffer) => Promise<Buffer>,
): Promise<ContentKey> {
  const w = parseWrappedKeyFile(wrappedFileText);
  if (w.bindingKey !== bindingThumbprint) {
    throw new EdgeguardError(
      'EG_WRONG_KEY',
      `the content key was wrapped to another device's binding key (${w.bindingKey.slice(0, 12)}…, this device is ${bindingThumbprint.slice(0, 12)}…); wrap it again with this device's binding.pub.`,
    );
  }
  const raw = await decrypt(w.ciphertextBytes);
  if (raw.length !== 32) {
    wipe(raw);
    throw new EdgeguardError(
      'EG_TAMPERED',
      'the unwrapped content key is not 32 bytes; the wrapped key file was altered.',
    );
  }
  const key = contentKeyFromBytes(raw);
  if (key.kid !== w.kid) {
    wipe(raw);
    throw new EdgeguardError(
      'EG_TAMPERED',
      'the unwrapped content key does not match the kid in the wrapped key file; the file was altered.',
    );
  }
  return key;
}

/**
 * The content keys a store has handed out, held so that a tamper response can zero them all at
 * once, including any a caller kept past its use. Keys a caller already wiped are dropped from
 * the set as new ones come in, so it stays as small as the keys in use.
 */
export class UnwrappedKeys {
  private readonly live = new Set<Buffer>();
  private wiped = false;

  /** Throws EG_LOCKED once the store was wiped. */
  assertUsable(): void {
    if (this.wiped)
      throw new EdgeguardError(
        'EG_LOCKED',
        'the key store was wiped by a tamper response; the device must be re-provisioned before it unwraps again.',
      );
  }

  /** Record a key just unwrapped; one that finished after a wipe is zeroed and refused. */
  track(key: ContentKey): ContentKey {
    if (this.wiped) {
      wipe(key.bytes);
      this.assertUsable();
    }
    for (const b of this.live) if (b.every((x) => x === 0)) this.live.delete(b);
    this.live.add(key.bytes);
    return key;
  }

  wipeAll(): void {
    this.wiped = true;
    for (const b of this.live) wipe(b);
    this.live.clear();
  }
}
