/**
 * What the CLI and the agent do with a package: inspect, verify, unpack (the explicit escape
 * hatch) and decrypt into memory (the normal path). Every decrypting operation checks the
 * publisher signature first: a package is never decrypted unsigned.
 */
import { open, rename, rm } from 'node:fs/promises';
import { randomBytes, type KeyObject } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { constants as bufferConstants } from 'node:buffer';
import { EdgeguardError, fsError } from '../errors/index.ts';
import type { ContentKey } from '../crypto/index.ts';
import { PackageFile, decryptEngine, readSignatureFile, type DecryptOptions } from './package-file.ts';
import type { OpenWorkers } from './chunk-opener.ts';
import { signaturePathFor } from './pack.ts';
import { unverifiedStatement, type VerifiedSignature } from './signature.ts';
import { chunkCount, type PackageHeader } from './header.ts';

export interface TrustOptions {
  /** Trusted publisher keys; at least one must have signed the package. */
  publicKeys: KeyObject[];
  signaturePath?: string;
  onProgress?: (doneBytes: number, totalBytes: number) => void;
  /** Who opens the shards: 'auto' (default: native when built, else JavaScript), 'native' or 'js'. */
  engine?: DecryptOptions['engine'];
}

export interface PackageSummary {
  path: string;
  packageBytes: number;
  header: PackageHeader;
  headerSha256: string;
  chunks: number;
}

function summary(pkg: PackageFile): PackageSummary {
  return {
    path: pkg.path,
    packageBytes: pkg.size,
    header: pkg.header,
    headerSha256: pkg.parsed.digest.toString('hex'),
    chunks: chunkCount(pkg.header.plaintextLength, pkg.header.chunkSize),
  };
}

async function withPackage<T>(path: string, fn: (pkg: PackageFile) => Promise<T>): Promise<T> {
  const pkg = await PackageFile.open(path);
  try {
    return await fn(pkg);
  } finally {
    await pkg.close();
  }
}

function requireTrust(o: TrustOptions): void {
  if (o.publicKeys.length === 0) {
    throw new EdgeguardError(
      'EG_USAGE',
      'a publisher public key is required (--pub); packages are never used unverified.',
    );
  }
}

export interface InspectResult extends PackageSummary {
  signature?:
    { subjects: Array<{ name: string; sha256: string }>; keyIds: string[]; predicateType: string } | { error: string };
}

/** Header and signature subjects, without any key. Nothing here is verified. */
export async function inspectPackage(path: string, signaturePath = signaturePathFor(path)): Promise<InspectResult> {
  return withPackage(path, async (pkg) => {
    const result: InspectResult = summary(pkg);
    try {
      const env = await readSignatureFile(signaturePath);
      const st = unverifiedStatement(env);
      result.signature = st
        ? {
            subjects: st.subject.map((s) => ({ name: s.name, sha256: s.digest.sha256 })),
            keyIds: env.signatures.map((s) => s.keyid),
            predicateType: st.predicateType,
          }
        : { error: 'the envelope does not hold an edgeguard OMS statement' };
    } catch (e) {
      result.signature = { error: e instanceof EdgeguardError ? e.message : String(e) };
    }
    return result;
  });
}

export interface VerifyResult extends PackageSummary {
  signedBy: string;
  chunksAuthenticated: boolean;
  /** Who opened the chunks (with a content key): the native opener, or JavaScript and why. */
  engine?: { engine: 'native' | 'js'; reason?: string };
}

/** Signature and header; with a content key, every chunk's tag and every signed shard digest too. */
export async function verifyPackage(
  path: string,
  o: TrustOptions & { contentKey?: ContentKey },
): Promise<VerifyResult> {
  requireTrust(o);
  return withPackage(path, async (pkg) => {
    // Decryption workers boot while the signature is checked; they get no key unless it verifies.
    const started = o.contentKey ? pkg.startDecryptWorkers({ engine: o.engine }) : undefined;
    try {
      const sig = await pkg.verifySignature(o.publicKeys, o.signaturePath);
      if (o.contentKey) {
        await pkg.decrypt(o.contentKey, null, {
          engine: o.engine,
          onProgress: o.onProgress,
          shards: sig.shards,
          started,
        });
      }
      return {
        ...summary(pkg),
        signedBy: sig.keyId,
        chunksAuthenticated: Boolean(o.contentKey),
        engine: o.contentKey ? decryptEngine({ engine: o.engine }) : undefined,
      };
    } finally {
      await started?.terminate();
    }
  });
}

/**
 * Write the plaintext model to `outputPath`: the escape hatch. It goes to a 0600 temporary file
 * beside the target, renamed only once every chunk and the digest check out; on any failure the
 * partial file is removed, so no output file exists.
 */
export async function unpackPackage(
  path: string,
  outputPath: string,
  o: TrustOptions & { contentKey: ContentKey; overwrite?: boolean },
): Promise<VerifyResult> {
  requireTrust(o);
  return withPackage(path, async (pkg) => {
    const started = pkg.startDecryptWorkers({ engine: o.engine });
    try {
      return await unpackWith(pkg, outputPath, o, started);
    } finally {
      await started?.terminate();
    }
  });
}

async function unpackWith(
  pkg: PackageFile,
  outputPath: string,
  o: TrustOptions & { contentKey: ContentKey; overwrite?: boolean },
  started: OpenWorkers | undefined,
): Promise<VerifyResult> {
  const sig = await pkg.verifySignature(o.publicKeys, o.signaturePath);
  if (!o.overwrite) {
    try {
      await (await open(outputPath, 'r')).close();
      throw new EdgeguardError('EG_EXISTS', `${outputPath} already exists; remove it or pass --force.`);
    } catch (e) {
      if (e instanceof EdgeguardError) throw e;
    }
  }
  const tmp = join(dirname(outputPath), `.${basename(outputPath)}.${randomBytes(6).toString('hex')}.partial`);
  const out = await open(tmp, 'wx', 0o600).catch((e) => {
    throw fsError(e, outputPath, 'write');
  });
  let ok = false;
  try {
    await pkg.decrypt(
      o.contentKey,
      { chunk: async (plain, _i, offset) => void (await out.write(plain, 0, plain.length, offset)) },
      { engine: o.engine, onProgress: o.onProgress, shards: sig.shards, started },
    );
    await out.sync();
    ok = true;
  } finally {
    await out.close();
    if (!ok) await rm(tmp, { force: true });
  }
  await rename(tmp, outputPath).catch(async (e) => {
    await rm(tmp, { force: true });
    throw fsError(e, outputPath, 'write');
  });
  return { ...summary(pkg), signedBy: sig.keyId, chunksAuthenticated: true };
}

export interface DecryptedModel {
  /** The plaintext model. The caller owns it and must wipe it (`plaintext.fill(0)`) when done. */
  plaintext: Buffer;
  header: PackageHeader;
  headerSha256: string;
  signature: VerifiedSignature;
}

/** The normal path: verify the signature, then decrypt into memory only. */
export async function decryptPackageToMemory(
  path: string,
  o: TrustOptions & { contentKey: ContentKey },
): Promise<DecryptedModel> {
  requireTrust(o);
  return withPackage(path, async (pkg) => {
    const started = pkg.startDecryptWorkers({ engine: o.engine });
    try {
      return await decryptWith(pkg, o, started);
    } finally {
      await started?.terminate();
    }
  });
}

async function decryptWith(
  pkg: PackageFile,
  o: TrustOptions & { contentKey: ContentKey },
  started: OpenWorkers | undefined,
): Promise<DecryptedModel> {
  const signature = await pkg.verifySignature(o.publicKeys, o.signaturePath);
  const length = pkg.header.plaintextLength;
  if (length > bufferConstants.MAX_LENGTH) {
    throw new EdgeguardError(
      'EG_MODEL_LOAD',
      `the model is ${length} bytes, more than one in-memory buffer can hold on this platform.`,
    );
  }
  let plaintext: Buffer | undefined;
  try {
    await pkg.decrypt(
      o.contentKey,
      {
        begin: (n) => void (plaintext = Buffer.alloc(n)),
        chunk: (plain, _i, offset) => void plain.copy(plaintext!, offset),
      },
      { engine: o.engine, onProgress: o.onProgress, shards: signature.shards, started },
    );
  } catch (e) {
    plaintext?.fill(0);
    throw e;
  }
  return {
    plaintext: plaintext ?? Buffer.alloc(0),
    header: pkg.header,
    headerSha256: pkg.parsed.digest.toString('hex'),
    signature,
  };
}
