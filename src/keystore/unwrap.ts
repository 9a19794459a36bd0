/** The checks both providers make around their private-key operation. */
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
