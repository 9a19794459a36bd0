/**
 * Package signatures, interoperable with OpenSSF Model Signing (OMS) v1.0: a DSSE envelope over an
 * in-toto Statement v1 whose subject is the plaintext model, predicateType
 * "https://model_signing/signature/v1.0", predicate { serialization, resources } as OMS lays them
 * out, so OMS tooling can check the signature against the decrypted model file.
 *
 * OMS "files" serialization: resources sorted by name, each {name, algorithm, digest}; the subject
 * digest is SHA-256 over the concatenated raw resource digests. A package holds one file, so
 * root = SHA-256(SHA-256(model)).
 *
 * Added predicate field `edgeguard` binds the ciphertext as well: the SHA-256 of the exact package
 * header (which fixes salt, key id, cipher suite, chunk size, length and plaintext digest) and the
 * model metadata (name, version), so neither can be swapped under a valid signature.
 */
import type { KeyObject } from 'node:crypto';
import { z } from 'zod';
import { EdgeguardError } from '../errors/index.ts';
import { IN_TOTO_PAYLOAD_TYPE, sha256, signEnvelope, verifyEnvelope, type DsseEnvelope, type SigningKeyPair } from '../crypto/index.ts';
import { FORMAT_VERSION, type ParsedHeader } from './header.ts';
import { modelMetadataSchema, type ModelMetadata } from './metadata.ts';

export const IN_TOTO_STATEMENT_TYPE = 'https://in-toto.io/Statement/v1';
export const OMS_PREDICATE_TYPE = 'https://model_signing/signature/v1.0';

const hex64 = z.string().regex(/^[0-9a-f]{64}$/);

const statementSchema = z.object({
  _type: z.literal(IN_TOTO_STATEMENT_TYPE),
  subject: z.array(z.object({ name: z.string(), digest: z.object({ sha256: hex64 }) })).length(1),
  predicateType: z.literal(OMS_PREDICATE_TYPE),
  predicate: z.object({
    serialization: z.object({ method: z.literal('files'), hash_type: z.literal('sha256'), allow_symlinks: z.boolean() }),
    resources: z.array(z.object({ name: z.string().min(1), algorithm: z.literal('sha256'), digest: hex64 })).length(1),
    edgeguard: z.object({
      package: z.object({
        formatVersion: z.number().int(),
        headerSha256: hex64,
        keyId: z.string(),
        cipherSuite: z.string(),
        chunkSize: z.number().int(),
        plaintextLength: z.number().int(),
      }),
      model: modelMetadataSchema,
    }),
  }),
});

export type ModelStatement = z.infer<typeof statementSchema>;

export function buildStatement(parsed: ParsedHeader, resourceName: string): ModelStatement {
  const h = parsed.header;
  const digest = h.plaintextSha256;
  return {
    _type: IN_TOTO_STATEMENT_TYPE,
    subject: [{ name: h.metadata.name, digest: { sha256: sha256(digest).toString('hex') } }],
    predicateType: OMS_PREDICATE_TYPE,
    predicate: {
      serialization: { method: 'files', hash_type: 'sha256', allow_symlinks: false },
      resources: [{ name: resourceName, algorithm: 'sha256', digest: digest.toString('hex') }],
      edgeguard: {
        package: {
          formatVersion: FORMAT_VERSION,
          headerSha256: parsed.digest.toString('hex'),
          keyId: h.keyId,
          cipherSuite: h.suite,
          chunkSize: h.chunkSize,
          plaintextLength: h.plaintextLength,
        },
        model: h.metadata,
      },
    },
  };
}

export function signPackageHeader(parsed: ParsedHeader, resourceName: string, signer: SigningKeyPair): DsseEnvelope {
  const payload = Buffer.from(JSON.stringify(buildStatement(parsed, resourceName)), 'utf8');
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
    throw new EdgeguardError('EG_SIGNATURE_INVALID', `the signed statement is not an edgeguard OMS statement (${i?.path.join('.') || 'root'}: ${i?.message}).`);
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
}

/**
 * Verify the envelope with the trusted keys, then check that the statement describes exactly this
 * package: the same plaintext digest, the same header bytes, the same name and version.
 */
export function verifyPackageSignature(envelope: DsseEnvelope, parsed: ParsedHeader, trusted: KeyObject[]): VerifiedSignature {
  const { payload, keyId } = verifyEnvelope(envelope, trusted, IN_TOTO_PAYLOAD_TYPE);
  const statement = parseStatement(payload);
  const resource = statement.predicate.resources[0]!;
  const root = sha256(Buffer.from(resource.digest, 'hex')).toString('hex');
  if (statement.subject[0]!.digest.sha256 !== root) {
    throw new EdgeguardError('EG_SIGNATURE_INVALID', 'the signed statement is inconsistent: its subject digest is not the root of its resources.');
  }
  const h = parsed.header;
  const signedModel: ModelMetadata = statement.predicate.edgeguard.model;
  if (resource.digest !== h.plaintextSha256.toString('hex')) {
    throw new EdgeguardError('EG_SIGNATURE_MISMATCH', `the signature is for a different model (signed ${signedModel.name} v${signedModel.version}); this package holds ${h.metadata.name} v${h.metadata.version}.`);
  }
  if (signedModel.name !== h.metadata.name || signedModel.version !== h.metadata.version) {
    throw new EdgeguardError('EG_SIGNATURE_MISMATCH', `the signature is for ${signedModel.name} v${signedModel.version}, but the package says ${h.metadata.name} v${h.metadata.version}.`);
  }
  if (statement.predicate.edgeguard.package.headerSha256 !== parsed.digest.toString('hex')) {
    throw new EdgeguardError('EG_SIGNATURE_MISMATCH', 'the package header does not match the signed header digest; the header was edited or the package re-encrypted.');
  }
  return { keyId, statement };
}
