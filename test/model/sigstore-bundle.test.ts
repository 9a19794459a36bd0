/**
 * Sigstore bundle interop: `edgeguard model bundle` writes the package signature as a v0.3
 * key-based DSSE bundle that sigstore-js (@sigstore/bundle validation, @sigstore/verify's
 * Verifier, the verifier cosign's and model_signing's JS counterpart) accepts with the publisher
 * key; the same bundle is accepted back wherever edgeguard reads a signature. An edited payload
 * fails both verifiers; keyless and message-signature bundles are refused with typed codes, and
 * arbitrary JSON never passes untyped.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { assertBundleLatest, bundleFromJSON, isBundleWithPublicKey } from '@sigstore/bundle';
import { Verifier, toSignedEntity } from '@sigstore/verify';
import {
  bundleToEnvelope,
  generateContentKey,
  generateSigningKey,
  parseEnvelope,
  SIGSTORE_BUNDLE_MEDIA_TYPE,
} from '../../src/crypto/index.ts';
import { verifyPackage } from '../../src/model/index.ts';
import { runCli } from '../helpers/cli.ts';
import { packBytes } from '../helpers/packages.ts';
import { tempDir } from '../helpers/workspace.ts';

function sigstoreVerify(bundleJson: unknown, publicKey: import('node:crypto').KeyObject, hint: string): void {
  const bundle = bundleFromJSON(bundleJson);
  assertBundleLatest(bundle);
  assert.ok(isBundleWithPublicKey(bundle));
  const verifier = new Verifier(
    {
      certificateAuthorities: [],
      timestampAuthorities: [],
      tlogs: [],
      ctlogs: [],
      publicKey: (h: string) => {
        if (h !== hint) throw new Error(`unknown key hint ${h}`);
        return { publicKey, validFor: () => true };
      },
    },
    { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 },
  );
  verifier.verify(toSignedEntity(bundle));
}

test('model bundle: a v0.3 key-based DSSE bundle that sigstore-js verifies and edgeguard reads back', async (t) => {
  const dir = await tempDir(t);
  for (const alg of ['ecdsa-p256', 'ed25519'] as const) {
    const signer = generateSigningKey(alg);
    const pkg = await packBytes(
      dir,
      randomBytes(5000),
      { contentKey: generateContentKey(), signer },
      { name: `m-${alg}`, version: 2 },
    );
    const r = await runCli(['model', 'bundle', pkg.packagePath, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { bundle: string; mediaType: string; keyHint: string };
    assert.equal(out.mediaType, SIGSTORE_BUNDLE_MEDIA_TYPE);
    assert.equal(out.keyHint, signer.keyId);
    const bundleJson = JSON.parse(await readFile(out.bundle, 'utf8')) as { dsseEnvelope: { payload: string } };

    // An independent verifier, with only the publisher key.
    sigstoreVerify(bundleJson, signer.publicKey, signer.keyId);
    // The envelope inside is the package's own signature, byte for byte.
    assert.deepEqual(bundleToEnvelope(bundleJson), parseEnvelope(await readFile(pkg.signaturePath, 'utf8')));
    // edgeguard takes the bundle wherever it reads a signature.
    const verified = await verifyPackage(pkg.packagePath, {
      publicKeys: [signer.publicKey],
      signaturePath: out.bundle,
    });
    assert.equal(verified.signedBy, signer.keyId);

    // An edited statement fails both.
    const statement = JSON.parse(Buffer.from(bundleJson.dsseEnvelope.payload, 'base64').toString()) as {
      subject: Array<{ name: string }>;
    };
    statement.subject[0]!.name = 'other-model';
    const edited = structuredClone(bundleJson);
    edited.dsseEnvelope.payload = Buffer.from(JSON.stringify(statement)).toString('base64');
    assert.throws(() => sigstoreVerify(edited, signer.publicKey, signer.keyId));
    const editedPath = join(dir, `edited-${alg}.sigstore.json`);
    await writeFile(editedPath, JSON.stringify(edited));
    await assert.rejects(
      verifyPackage(pkg.packagePath, { publicKeys: [signer.publicKey], signaturePath: editedPath }),
      {
        code: 'EG_SIGNATURE_INVALID',
      },
    );
    // Not overwritten without --force.
    const again = await runCli(['model', 'bundle', pkg.packagePath]);
    assert.notEqual(again.code, 0);
  }
});

test('keyless, message-signature and unknown-version bundles are refused; arbitrary JSON is typed', () => {
  const base = {
    mediaType: SIGSTORE_BUNDLE_MEDIA_TYPE,
    verificationMaterial: { publicKey: { hint: 'k' }, tlogEntries: [] },
    dsseEnvelope: {
      payload: 'e30=',
      payloadType: 'application/vnd.in-toto+json',
      signatures: [{ sig: 'AA==', keyid: '' }],
    },
  };
  const code = (c: string) => (e: { code?: string }) => e.code === c;
  assert.throws(
    () => bundleToEnvelope({ ...base, verificationMaterial: { certificate: { rawBytes: 'AA==' }, tlogEntries: [] } }),
    code('EG_UNSUPPORTED'),
  );
  const { dsseEnvelope: _, ...noDsse } = base;
  assert.throws(
    () => bundleToEnvelope({ ...noDsse, messageSignature: { messageDigest: {}, signature: 'AA==' } }),
    code('EG_UNSUPPORTED'),
  );
  assert.throws(
    () => bundleToEnvelope({ ...base, mediaType: 'application/vnd.dev.sigstore.bundle.v0.9+json' }),
    code('EG_UNSUPPORTED'),
  );
  assert.throws(
    () => parseEnvelope(JSON.stringify({ ...base, dsseEnvelope: { payload: 5 } })),
    code('EG_SIGNATURE_INVALID'),
  );
  fc.assert(
    fc.property(fc.jsonValue(), (v) => {
      const value =
        typeof v === 'object' && v !== null && !Array.isArray(v) ? { ...v, mediaType: SIGSTORE_BUNDLE_MEDIA_TYPE } : v;
      try {
        parseEnvelope(JSON.stringify(value));
      } catch (e) {
        assert.ok(['EG_SIGNATURE_INVALID', 'EG_UNSUPPORTED'].includes((e as { code?: string }).code ?? ''), String(e));
      }
    }),
    { numRuns: 3000 },
  );
});
