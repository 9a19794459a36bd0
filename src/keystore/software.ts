/**
 * The software key store: the binding key is an RSA-2048 private key in a PEM file (PKCS#8, mode
 * 0600) beside the device directory. For development and TPM-less devices only: anyone who copies
 * the directory can unwrap, which is why its posture always reads "software key: not hardware-bound".
 */
import {
  constants,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  privateDecrypt,
  type KeyObject,
} from 'node:crypto';
import { assertPrivateFileMode, writePrivateFile, type ContentKey } from '../crypto/index.ts';
import { EdgeguardError, FILE_CAPS, readBoundedText } from '../errors/index.ts';
import { SOFTWARE_POSTURE_LABEL, type KeyStore, type KeyStorePosture } from './types.ts';
import { bindingKeyThumbprint } from './wrapped-key.ts';
import { UnwrappedKeys, unwrapChecked } from './unwrap.ts';

export class SoftwareKeyStore implements KeyStore {
  readonly provider = 'software' as const;
  readonly posture: KeyStorePosture;
  readonly bindingPublicKey: KeyObject;

  private constructor(private readonly privateKey: KeyObject) {
    this.bindingPublicKey = createPublicKey(privateKey);
    this.posture = {
      provider: 'software',
      hardwareBound: false,
      label: SOFTWARE_POSTURE_LABEL,
      bindingKey: bindingKeyThumbprint(this.bindingPublicKey),
    };
  }

  /** Generate a new binding key and write it (0600, never overwriting). */
  static async create(privateKeyPath: string): Promise<SoftwareKeyStore> {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    await writePrivateFile(privateKeyPath, privateKey.export({ type: 'pkcs8', format: 'pem' }));
    return new SoftwareKeyStore(privateKey);
  }

  static async open(privateKeyPath: string): Promise<SoftwareKeyStore> {
    await assertPrivateFileMode(privateKeyPath);
    const pem = await readBoundedText(privateKeyPath, FILE_CAPS.key, 'read the software binding key');
    let key: KeyObject;
    try {
      key = createPrivateKey(pem);
    } catch (e) {
      throw new EdgeguardError('EG_KEY_FORMAT', `${privateKeyPath} is not a PEM private key.`, { cause: e });
    }
    if (key.asymmetricKeyType !== 'rsa')
      throw new EdgeguardError('EG_KEY_FORMAT', `${privateKeyPath} is not an RSA key.`);
    return new SoftwareKeyStore(key);
  }

  private readonly unwrapped = new UnwrappedKeys();

  async unwrapContentKey(wrappedFileText: string): Promise<ContentKey> {
    this.unwrapped.assertUsable();
    const key = await unwrapChecked(wrappedFileText, this.posture.bindingKey, async (ct) => {
      try {
        return privateDecrypt(
          { key: this.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
          ct,
        );
      } catch (e) {
        throw new EdgeguardError(
          'EG_TAMPERED',
          "the wrapped key does not decrypt with this device's binding key; the file was altered.",
          { cause: e },
        );
      }
    });
    return this.unwrapped.track(key);
  }

  wipe(): void {
    this.unwrapped.wipeAll();
  }
}
