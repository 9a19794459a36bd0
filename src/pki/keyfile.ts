/**
 * CA private keys at rest: PKCS#8 EncryptedPrivateKeyInfo (RFC 5958 section 3) with PBES2
 * (RFC 8018 section 6.2): PBKDF2-HMAC-SHA256 with a random 16-byte salt and a high iteration
 * count, then AES-256-CBC with a random IV. The result is ordinary "ENCRYPTED PRIVATE KEY" PEM
 * that OpenSSL reads (`openssl pkey -in root-ca.key`), and Node decrypts it for us.
 */
import { createCipheriv, createPrivateKey, pbkdf2Sync, randomBytes, type KeyObject } from 'node:crypto';
import { EdgeguardError, FILE_CAPS, readBoundedTextSync } from '../errors/index.ts';
import { derNull, integer, octetString, oid, sequence } from './der.ts';

const OID_PBES2 = '1.2.840.113549.1.5.13';
const OID_PBKDF2 = '1.2.840.113549.1.5.12';
const OID_HMAC_SHA256 = '1.2.840.113549.2.9';
const OID_AES256_CBC = '2.16.840.1.101.3.4.1.42';

/** OWASP's 2023 figure for PBKDF2-HMAC-SHA256. */
export const PBKDF2_ITERATIONS = 600_000;

export const PASSPHRASE_ENV = 'EDGEGUARD_CA_PASSPHRASE';

export function encryptPrivateKey(key: KeyObject, passphrase: string, iterations = PBKDF2_ITERATIONS): string {
  if (passphrase.length < 8)
    throw new EdgeguardError('EG_CONFIG', 'the CA passphrase must be at least 8 characters long.');
  const plain = key.export({ type: 'pkcs8', format: 'der' });
  const salt = randomBytes(16);
  const iv = randomBytes(16);
  const kek = pbkdf2Sync(Buffer.from(passphrase, 'utf8'), salt, iterations, 32, 'sha256');
  const cipher = createCipheriv('aes-256-cbc', kek, iv);
  const encrypted = Buffer.concat([cipher.update(plain), cipher.final()]);
  plain.fill(0);
  kek.fill(0);
  const der = sequence(
    sequence(
      oid(OID_PBES2),
      sequence(
        sequence(
          oid(OID_PBKDF2),
          sequence(octetString(salt), integer(iterations), sequence(oid(OID_HMAC_SHA256), derNull())),
        ),
        sequence(oid(OID_AES256_CBC), octetString(iv)),
      ),
    ),
    octetString(encrypted),
  );
  const b64 = der
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n$/, '');
  return `-----BEGIN ENCRYPTED PRIVATE KEY-----\n${b64}\n-----END ENCRYPTED PRIVATE KEY-----\n`;
}

/** An "ENCRYPTED PRIVATE KEY" PEM block whose body is base64 of a DER SEQUENCE. */
function isEncryptedPkcs8Pem(pem: string): boolean {
  const m = /-----BEGIN ENCRYPTED PRIVATE KEY-----\s*([A-Za-z0-9+/=\s]+?)\s*-----END ENCRYPTED PRIVATE KEY-----/.exec(
    pem,
  );
  if (!m) return false;
  const der = Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64');
  return der.length > 2 && der[0] === 0x30;
}

export function decryptPrivateKey(pem: string, passphrase: string, what = 'the CA key'): KeyObject {
  try {
    return createPrivateKey({ key: pem, format: 'pem', passphrase });
  } catch (e) {
    const msg = (e as Error).message ?? '';
    // AES-CBC has no integrity of its own: a wrong passphrase usually breaks the padding ("bad
    // decrypt"), but about once in 256 the garbage ends in valid padding and it is the PKCS#8
    // decoder that fails. A well-formed encrypted container that does not open is a wrong
    // passphrase (or a damaged file), whichever error OpenSSL names.
    if (/bad decrypt|wrong|decrypt/i.test(msg) || isEncryptedPkcs8Pem(pem)) {
      throw new EdgeguardError(
        'EG_WRONG_KEY',
        `the passphrase does not decrypt ${what} (or the file is damaged); check ${PASSPHRASE_ENV} or the passphrase file.`,
        { cause: e },
      );
    }
    throw new EdgeguardError('EG_KEY_FORMAT', `${what} is not an encrypted PKCS#8 key (${msg}).`, { cause: e });
  }
}

/**
 * Where the CA passphrase comes from: an explicit file (first line), else the environment.
 * Fails closed: no passphrase, no CA.
 */
export function resolveCaPassphrase(opts: { file?: string | undefined; env?: NodeJS.ProcessEnv }): string {
  const env = opts.env ?? process.env;
  if (opts.file !== undefined) {
    const text = readBoundedTextSync(opts.file, FILE_CAPS.key, 'read the CA passphrase file');
    const first = text.split(/\r?\n/)[0] ?? '';
    if (first.length === 0) throw new EdgeguardError('EG_CONFIG', `the CA passphrase file ${opts.file} is empty.`);
    return first;
  }
  const v = env[PASSPHRASE_ENV];
  if (v === undefined || v.length === 0) {
    throw new EdgeguardError(
      'EG_CONFIG',
      `the fleet CA key is encrypted with a passphrase: set ${PASSPHRASE_ENV} or pass --ca-passphrase-file.`,
    );
  }
  return v;
}
