/**
 * MakeCredential on the verifier side (TCG TPM 2.0 Library Part 1, 24 "Credential Protection";
 * Part 3, 12.6 TPM2_MakeCredential; Part 1, Annex B.10.3 RSA secret sharing). The result can be
 * opened only by TPM2_ActivateCredential in the TPM that holds the EK's private key, and only
 * for an object with the given name (the AK): this proves the AK lives in the same TPM as the EK.
 *
 *   seed        random, |seed| = digest size of the EK's nameAlg
 *   encSecret   RSAES-OAEP(EK, hash = EK nameAlg, label "IDENTITY\0")(seed)
 *   symKey      KDFa(nameAlg, seed, "STORAGE", AK name, "", EK symmetric key bits)
 *   encIdentity AES-CFB(symKey, IV = 0)(TPM2B_DIGEST credential)
 *   hmacKey     KDFa(nameAlg, seed, "INTEGRITY", "", "", digest bits)
 *   outerHMAC   HMAC_nameAlg(hmacKey, encIdentity || AK name)
 *   TPM2B_ID_OBJECT        = u16 size || TPM2B_DIGEST outerHMAC || encIdentity
 *   TPM2B_ENCRYPTED_SECRET = u16 size || encSecret
 *
 * For an ECC EK (Part 1, 11.4.10.3 and Annex C): an ephemeral key pair on the EK's curve,
 *   Z = x(d_e * Q_EK), seed = KDFe(nameAlg, Z, "IDENTITY", x(Q_e), x(Q_EK), digest bits),
 *   encSecret = TPMS_ECC_POINT Q_e (TPM2B x, TPM2B y).
 *
 * The file form tpm2-tools reads (tpm2_activatecredential -i) prefixes u32 0xBADCC0DE, u32 1.
 */
import { constants, createCipheriv, createECDH, createHmac, publicEncrypt, randomBytes } from 'node:crypto';
import { EdgeguardError } from '../errors/index.ts';
import { ECC_CURVES, HASH_ALGS, TPM_ALG, tpmPublicKey, TpmReader, TpmWriter, type TpmPublic } from '../tpm/index.ts';
import { kdfa, kdfe } from './kdf.ts';

export const CREDENTIAL_FILE_MAGIC = 0xbadcc0de;
export const CREDENTIAL_FILE_VERSION = 1;

export interface MadeCredential {
  /** TPM2B_ID_OBJECT bytes (with their u16 size). */
  idObject: Buffer;
  /** TPM2B_ENCRYPTED_SECRET bytes (with their u16 size). */
  encryptedSecret: Buffer;
  /** The tpm2-tools file form: magic, version, idObject, encryptedSecret. */
  blob: Buffer;
}

export interface MakeCredentialOptions {
  /**
   * Tests only: a fixed seed, to compare byte for byte with another implementation. (For an ECC
   * EK the encrypted secret then no longer matches the seed.)
   */
  seed?: Uint8Array;
}

const NODE_CURVES: Record<string, string> = { 'P-256': 'prime256v1', 'P-384': 'secp384r1', 'P-521': 'secp521r1' };

function leftPad(b: Buffer, size: number): Buffer {
  return b.length >= size ? b : Buffer.concat([Buffer.alloc(size - b.length), b]);
}

/** Seed and encrypted secret for the EK (RSA: Annex B.10.3; ECC: 11.4.10.3 and Annex C). */
function shareSeed(
  ek: TpmPublic,
  hash: { node: string; size: number },
  fixedSeed: Buffer | undefined,
): { seed: Buffer; encSecret: Buffer } {
  if (ek.params.type === 'rsa') {
    const seed = fixedSeed ?? randomBytes(hash.size);
    // The seed is OAEP-encrypted with the EK's nameAlg and the label "IDENTITY\0".
    const encSecret = publicEncrypt(
      {
        key: tpmPublicKey(ek),
        padding: constants.RSA_PKCS1_OAEP_PADDING,
        oaepHash: hash.node,
        oaepLabel: Buffer.from('IDENTITY\0', 'latin1'),
      },
      seed,
    );
    return { seed, encSecret };
  }
  if (ek.params.type === 'ecc') {
    const curve = ECC_CURVES[ek.params.curveId];
    const nodeCurve = curve ? NODE_CURVES[curve.jwk] : undefined;
    if (!curve || !nodeCurve)
      throw new EdgeguardError(
        'EG_UNSUPPORTED',
        `the EK's ECC curve 0x${ek.params.curveId.toString(16)} is not supported.`,
      );
    tpmPublicKey(ek); // refuses a point that is not on the curve
    const ekX = leftPad(ek.params.x, curve.size);
    const ekY = leftPad(ek.params.y, curve.size);
    const ecdh = createECDH(nodeCurve);
    const ephemeral = ecdh.generateKeys();
    const z = ecdh.computeSecret(Buffer.concat([Buffer.from([0x04]), ekX, ekY]));
    const ex = ephemeral.subarray(1, 1 + curve.size);
    const ey = ephemeral.subarray(1 + curve.size);
    const seed = fixedSeed ?? kdfe(hash.node, z, 'IDENTITY', ex, ekX, hash.size * 8);
    z.fill(0);
    return { seed, encSecret: new TpmWriter().tpm2b(ex).tpm2b(ey).toBuffer() };
  }
  throw new EdgeguardError(
    'EG_UNSUPPORTED',
    'the EK is neither an RSA nor an ECC key; it cannot activate credentials.',
  );
}

function aesCfbName(keyBits: number): string {
  if (keyBits !== 128 && keyBits !== 192 && keyBits !== 256)
    throw new EdgeguardError('EG_UNSUPPORTED', `the EK's symmetric key size ${keyBits} is not AES-128/192/256.`);
  return `aes-${keyBits}-cfb`;
}

/**
 * Wrap `credential` (1..digest-size bytes) for the TPM holding `ek`, to be released only to the
 * object named `akName` (u16 nameAlg || digest).
 */
export function makeCredential(
  ek: TpmPublic,
  akName: Uint8Array,
  credential: Uint8Array,
  opts: MakeCredentialOptions = {},
): MadeCredential {
  const hash = HASH_ALGS[ek.nameAlg];
  if (!hash)
    throw new EdgeguardError(
      'EG_UNSUPPORTED',
      `the EK's name algorithm 0x${ek.nameAlg.toString(16)} is not supported.`,
    );
  if (ek.params.type !== 'rsa' && ek.params.type !== 'ecc')
    throw new EdgeguardError(
      'EG_UNSUPPORTED',
      'the EK is neither an RSA nor an ECC key; it cannot activate credentials.',
    );
  const sym = ek.params.symmetric;
  if (sym.algorithm !== TPM_ALG.AES || sym.mode !== TPM_ALG.CFB || sym.keyBits === undefined) {
    throw new EdgeguardError(
      'EG_UNSUPPORTED',
      'the EK is not a storage key with AES-CFB protection; it cannot activate credentials.',
    );
  }
  if (credential.length === 0 || credential.length > hash.size) {
    throw new EdgeguardError('EG_INTERNAL', `a credential must be 1 to ${hash.size} bytes.`);
  }
  // The AK name must be a digest name (not a handle), or the TPM will refuse to activate.
  const nameAlg = akName.length >= 2 ? (akName[0]! << 8) | akName[1]! : 0;
  const nameHash = HASH_ALGS[nameAlg];
  if (!nameHash || akName.length !== 2 + nameHash.size)
    throw new EdgeguardError('EG_TPM_STRUCTURE', 'the attestation key name is not nameAlg || digest.');

  if (opts.seed !== undefined && opts.seed.length !== hash.size)
    throw new EdgeguardError('EG_INTERNAL', `the seed must be ${hash.size} bytes.`);
  const { seed, encSecret } = shareSeed(ek, hash, opts.seed !== undefined ? Buffer.from(opts.seed) : undefined);

  // Part 1, 24.4: symmetric protection of the credential.
  const symKey = kdfa(hash.node, seed, 'STORAGE', akName, Buffer.alloc(0), sym.keyBits);
  const plain = new TpmWriter().tpm2b(credential).toBuffer();
  const cipher = createCipheriv(aesCfbName(sym.keyBits), symKey, Buffer.alloc(16));
  const encIdentity = Buffer.concat([cipher.update(plain), cipher.final()]);

  // Part 1, 24.5: the outer HMAC binds encIdentity to the AK name.
  const hmacKey = kdfa(hash.node, seed, 'INTEGRITY', Buffer.alloc(0), Buffer.alloc(0), hash.size * 8);
  const outerHmac = createHmac(hash.node, hmacKey).update(encIdentity).update(akName).digest();

  const idObject = new TpmWriter()
    .tpm2b(Buffer.concat([new TpmWriter().tpm2b(outerHmac).toBuffer(), encIdentity]))
    .toBuffer();
  const encryptedSecret = new TpmWriter().tpm2b(encSecret).toBuffer();
  const blob = Buffer.concat([
    new TpmWriter().u32(CREDENTIAL_FILE_MAGIC).u32(CREDENTIAL_FILE_VERSION).toBuffer(),
    idObject,
    encryptedSecret,
  ]);
  seed.fill(0);
  symKey.fill(0);
  hmacKey.fill(0);
  return { idObject, encryptedSecret, blob };
}

export interface ParsedCredentialBlob {
  integrityHmac: Buffer;
  encIdentity: Buffer;
  encSecret: Buffer;
}

/** Parse the tpm2-tools credential file form (what makeCredential().blob is), checking every length. */
export function parseCredentialBlob(bytes: Uint8Array): ParsedCredentialBlob {
  const r = new TpmReader(bytes, 'credential blob');
  const magic = r.u32('magic');
  if (magic !== CREDENTIAL_FILE_MAGIC)
    throw new EdgeguardError(
      'EG_TPM_STRUCTURE',
      `the credential blob magic is 0x${magic.toString(16)}, not 0xbadcc0de.`,
    );
  const version = r.u32('version');
  if (version !== CREDENTIAL_FILE_VERSION)
    throw new EdgeguardError('EG_TPM_STRUCTURE', `the credential blob version is ${version}, not 1.`);
  const idObject = r.tpm2b('TPM2B_ID_OBJECT');
  const encSecret = r.tpm2b('TPM2B_ENCRYPTED_SECRET');
  r.end();
  const inner = new TpmReader(idObject, 'TPM2B_ID_OBJECT');
  const integrityHmac = inner.tpm2b('integrityHMAC', 64);
  const encIdentity = inner.bytes(inner.remaining, 'encIdentity');
  if (encIdentity.length < 2)
    throw new EdgeguardError('EG_TPM_STRUCTURE', 'the credential blob carries no encrypted identity.');
  return { integrityHmac, encIdentity, encSecret };
}
