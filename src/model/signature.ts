/**
 * Package signatures, interoperable with OpenSSF Model Signing (OMS) v1.0: a DSSE envelope over an
 * in-toto Statement v1 whose subject is the plaintext model, predicateType
 * "https://model_signing/signature/v1.0", predicate { serialization, resources } as OMS lays them
 * out, so OMS tooling can check the signature against the decrypted model file.
 *
 * OMS "shards" serialization (src/model/shards.ts): serialization {method "shards", hash_type
 * "sha256", shard_size S, allow_symlinks false}; one resource per shard, in offset order, each
 * {name "FILE:START:END", algorithm "sha256-sharded-S", digest SHA-256 of those plaintext bytes};
 * the subject digest is SHA-256 over the concatenated raw resource digests in that order (OMS
 * sorts resources by file, then start offset, then end offset; one file makes that offset order).
 *
 * Added predicate field `edgeguard` binds the ciphertext as well: the SHA-256 of the exact package
 * header (which fixes salt, key id, cipher suite, chunk size, length and whole-plaintext digest)
 * and the model metadata (name, version), so neither can be swapped under a valid signature.
 */
import type { KeyObject } from 'node:crypto';
import { z } from 'zod';
import { EdgeguardError } from '../errors/index.ts';
import {
  IN_TOTO_PAYLOAD_TYPE,
  sha256,
  signEnvelope,
  verifyEnvelope,
  type DsseEnvelope,
  type SigningKeyPair,
} from '../crypto/index.ts';
import { FORMAT_VERSION, type ParsedHeader } from './header.ts';
import { modelMetadataSchema, type ModelMetadata } from './metadata.ts';
import { shardAlgorithm, shardCount, shardName, type SignedShards } from './shards.ts';

export const IN_TOTO_STATEMENT_TYPE = 'https://in-toto.io/Statement/v1';
export const OMS_PREDICATE_TYPE = 'https://model_signing/signature/v1.0';

const hex64 = z.string().regex(/^[0-9a-f]{64}$/);

const statementSchema = z.object({
  _type: z.literal(IN_TOTO_STATEMENT_TYPE),
  subject: z.array(z.object({ name: z.string(), digest: z.object({ sha256: hex64 }) })).length(1),
  predicateType: z.literal(OMS_PREDICATE_TYPE),
  predicate: z.object({
    serialization: z.object({
      method: z.literal('shards'),
      hash_type: z.literal('sha256'),
      shard_size: z.number().int().positive(),
      allow_symlinks: z.boolean(),
    }),
    resources: z.array(z.object({ name: z.string().min(1), algorithm: z.string(), digest: hex64 })).min(1),
    edgeguard: z.object({
      package: z.object({
        formatVersion: z.number().int(),
        headerSha256: hex64,
        keyId: z.string(),
        cipherSuite: z.string(),
        chunkSize: z.number().int(),
        plaintextLength: z.number().int(),
        plaintextSha256: hex64,
      }),
      model: modelMetadataSchema,
    }),
  }),
});

export type ModelStatement = z.infer<typeof statementSchema>;

/** `shardDigests`: the SHA-256 of each plaintext shard of `shardSize` bytes, in order. */
export function buildStatement(
  parsed: ParsedHeader,
  resourceName: string,
  shardSize: number,
  shardDigests: Buffer[],
): ModelStatement {
  const h = parsed.header;
  if (shardDigests.length !== shardCount(h.plaintextLength, shardSize))
    throw new EdgeguardError('EG_INTERNAL', 'shard digests do not cover the model.');
  return {
    _type: IN_TOTO_STATEMENT_TYPE,
    subject: [{ name: h.metadata.name, digest: { sha256: sha256(...shardDigests).toString('hex') } }],
    predicateType: OMS_PREDICATE_TYPE,
    predicate: {
      serialization: { method: 'shards', hash_type: 'sha256', shard_size: shardSize, allow_symlinks: false },
      resources: shardDigests.map((d, i) => ({
        name: shardName(resourceName, i, h.plaintextLength, shardSize),
        algorithm: shardAlgorithm(shardSize),
        digest: d.toString('hex'),
      })),
      edgeguard: {
        package: {
          formatVersion: FORMAT_VERSION,
          headerSha256: parsed.digest.toString('hex'),
          keyId: h.keyId,
          cipherSuite: h.suite,
          chunkSize: h.chunkSize,
          plaintextLength: h.plaintextLength,
          plaintextSha256: h.plaintextSha256.toString('hex'),
        },
        model: h.metadata,
      },
    },
  };
}

export function signPackageHeader(
  parsed: ParsedHeader,
  resourceName: string,
  shardSize: number,
  shardDigests: Buffer[],
  signer: SigningKeyPair,
): DsseEnvelope {
  const payload = Buffer.from(JSON.stringify(buildStatement(parsed, resourceName, shardSize, shardDigests)), 'utf8');
  return signEnvelope(IN_TOTO_PAYLOAD_TYPE, payload, signer);
}

export function parseStatement(payload: Buffer): ModelStatement {
  let json: unknown;
  try {
    json = JSON.parse(payload.toString('utf8'));
  } catch {
    throw new EdgeguardError('EG_SIGNATURE_INVALID', 'the signed statement is not JSON.');
  }
  const r = statementSchema.safeParse(json);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new EdgeguardError(
      'EG_SIGNATURE_INVALID',
      `the signed statement is not an edgeguard OMS statement (${i?.path.join('.') || 'root'}: ${i?.message}).`,
    );
  }
  return r.data;
}

/** Subjects of a signature, readable without any key (for `model inspect`). Not verified. */
export function unverifiedStatement(envelope: DsseEnvelope): ModelStatement | undefined {
  try {
    return parseStatement(Buffer.from(envelope.payload, 'base64'));
  } catch {
    return undefined;
  }
}

export interface VerifiedSignature {
  keyId: string;
  statement: ModelStatement;
  /** The signed shard digests, checked against every decrypted shard. */
  shards: SignedShards;
}

const invalid = (why: string) =>
  new EdgeguardError('EG_SIGNATURE_INVALID', `the signed statement is inconsistent: ${why}.`);

/**
 * Verify the envelope with the trusted keys, then check that the statement is well formed (the
 * subject digest is the root of the shard digests; the shards are exactly the consecutive ranges
 * of one file, in order) and that it describes exactly this package: the same name and version,
 * the same header bytes, the same length.
 */
export function verifyPackageSignature(
  envelope: DsseEnvelope,
  parsed: ParsedHeader,
  trusted: KeyObject[],
): VerifiedSignature {
  const { payload, keyId } = verifyEnvelope(envelope, trusted, IN_TOTO_PAYLOAD_TYPE);
  const statement = parseStatement(payload);
  const { resources, serialization, edgeguard } = statement.predicate;
  const digests = Buffer.concat(resources.map((r) => Buffer.from(r.digest, 'hex')));
  if (statement.subject[0]!.digest.sha256 !== sha256(digests).toString('hex'))
    throw invalid('its subject digest is not the root of its shard digests');
  const shardSize = serialization.shard_size;
  const length = edgeguard.package.plaintextLength;
  if (!Number.isSafeInteger(length) || length < 0) throw invalid('its plaintext length is not a length');
  if (resources.length !== shardCount(length, shardSize))
    throw invalid(
      `it lists ${resources.length} shards; ${length} bytes in shards of ${shardSize} make ${shardCount(length, shardSize)}`,
    );
  const first = resources[0]!.name;
  const file = first.slice(0, first.lastIndexOf(':', first.lastIndexOf(':') - 1));
  resources.forEach((r, i) => {
    if (r.name !== shardName(file, i, length, shardSize))
      throw invalid(`shard ${i} is named "${r.name}", expected "${shardName(file, i, length, shardSize)}"`);
    if (r.algorithm !== shardAlgorithm(shardSize))
      throw invalid(`shard ${i} has algorithm "${r.algorithm}", expected "${shardAlgorithm(shardSize)}"`);
  });
  const h = parsed.header;
  const signedModel: ModelMetadata = edgeguard.model;
  if (signedModel.name !== h.metadata.name || signedModel.version !== h.metadata.version) {
    throw new EdgeguardError(
      'EG_SIGNATURE_MISMATCH',
      `the signature is for ${signedModel.name} v${signedModel.version}, but the package says ${h.metadata.name} v${h.metadata.version}.`,
    );
  }
  if (edgeguard.package.headerSha256 !== parsed.digest.toString('hex')) {
    throw new EdgeguardError(
      'EG_SIGNATURE_MISMATCH',
      `the signature is for a different package of ${signedModel.name} v${signedModel.version}: the header does not match the signed header digest (the header was edited, or the package re-encrypted).`,
    );
  }
  // The header digest matched, so these only disagree if the signer signed an inconsistent statement.
  if (length !== h.plaintextLength || edgeguard.package.plaintextSha256 !== h.plaintextSha256.toString('hex'))
    throw invalid('its plaintext length or digest differs from the signed header');
  if (shardSize % h.chunkSize !== 0)
    throw invalid(`its shard size ${shardSize} is not a multiple of the chunk size ${h.chunkSize}`);
  return { keyId, statement, shards: { shardSize, digests } };
}
