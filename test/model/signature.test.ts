import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import {
  generateContentKey,
  generateSigningKey,
  parseEnvelope,
  signEnvelope,
  IN_TOTO_PAYLOAD_TYPE,
} from '../../src/crypto/index.ts';
import { decryptPackageToMemory, verifyPackage, OMS_PREDICATE_TYPE } from '../../src/model/index.ts';
import { packBytes } from '../helpers/packages.ts';
import { tempDir } from '../helpers/workspace.ts';

const code = (c: string) => (e: { code?: string }) => e.code === c;

async function setup(t: Parameters<typeof tempDir>[0]) {
  const dir = await tempDir(t);
  const keys = { contentKey: generateContentKey(), signer: generateSigningKey() };
  const pkg = await packBytes(dir, randomBytes(3000), keys, { chunkSize: 1024, name: 'detector', version: 3 });
  return { dir, keys, pkg };
}

test('the signature is an OMS v1.0 in-toto statement in a DSSE envelope', async (t) => {
  const { pkg } = await setup(t);
  const env = parseEnvelope(await readFile(pkg.signaturePath, 'utf8'));
  assert.equal(env.payloadType, IN_TOTO_PAYLOAD_TYPE);
  const st = JSON.parse(Buffer.from(env.payload, 'base64').toString());
  assert.equal(st._type, 'https://in-toto.io/Statement/v1');
  assert.equal(st.predicateType, OMS_PREDICATE_TYPE);
  // OMS "shards" serialization; the statement-level layout is tested in shards.test.ts.
  assert.deepEqual(st.predicate.serialization, {
    method: 'shards',
    hash_type: 'sha256',
    shard_size: 64 * 1024,
    allow_symlinks: false,
  });
  assert.deepEqual(
    st.predicate.resources.map((r: { name: string }) => r.name),
    ['model.bin:0:3000'],
  );
  assert.equal(st.predicate.edgeguard.package.plaintextSha256, pkg.parsed.header.plaintextSha256.toString('hex'));
  assert.equal(st.predicate.edgeguard.package.headerSha256, pkg.parsed.digest.toString('hex'));
  assert.equal(st.subject[0].name, 'detector');
});

test('a wrong public key is refused (EG_SIGNATURE_INVALID)', async (t) => {
  const { keys, pkg } = await setup(t);
  await assert.rejects(
    verifyPackage(pkg.packagePath, { publicKeys: [generateSigningKey().publicKey] }),
    code('EG_SIGNATURE_INVALID'),
  );
  await assert.rejects(
    decryptPackageToMemory(pkg.packagePath, {
      publicKeys: [generateSigningKey('ed25519').publicKey],
      contentKey: keys.contentKey,
    }),
    code('EG_SIGNATURE_INVALID'),
  );
});

test('an edited statement is refused (EG_SIGNATURE_INVALID)', async (t) => {
  const { keys, pkg } = await setup(t);
  const env = JSON.parse(await readFile(pkg.signaturePath, 'utf8'));
  const st = JSON.parse(Buffer.from(env.payload, 'base64').toString());
  st.predicate.edgeguard.model.version = 4;
  env.payload = Buffer.from(JSON.stringify(st)).toString('base64');
  await writeFile(pkg.signaturePath, JSON.stringify(env));
  await assert.rejects(
    verifyPackage(pkg.packagePath, { publicKeys: [keys.signer.publicKey] }),
    code('EG_SIGNATURE_INVALID'),
  );
});

test('a package with the signature of a different model is refused (EG_SIGNATURE_MISMATCH)', async (t) => {
  const { dir, keys, pkg } = await setup(t);
  const other = await packBytes(dir, randomBytes(3000), keys, { chunkSize: 1024, name: 'detector', version: 3 });
  await copyFile(other.signaturePath, pkg.signaturePath);
  await assert.rejects(
    verifyPackage(pkg.packagePath, { publicKeys: [keys.signer.publicKey] }),
    code('EG_SIGNATURE_MISMATCH'),
  );
});

test('a signature over a different version of the same model is refused (EG_SIGNATURE_MISMATCH)', async (t) => {
  const { dir, keys } = await setup(t);
  const data = randomBytes(2000);
  const v3 = await packBytes(dir, data, keys, { name: 'detector', version: 3 });
  const v4 = await packBytes(dir, data, keys, { name: 'detector', version: 4 });
  await copyFile(v3.signaturePath, v4.signaturePath);
  await assert.rejects(
    verifyPackage(v4.packagePath, { publicKeys: [keys.signer.publicKey] }),
    code('EG_SIGNATURE_MISMATCH'),
  );
});

test('the same plaintext re-encrypted under a signed header is refused (EG_SIGNATURE_MISMATCH)', async (t) => {
  // A holder of the content key re-packs the same model: new salt, so a new header digest.
  const { dir, keys } = await setup(t);
  const data = randomBytes(2000);
  const first = await packBytes(dir, data, keys, { name: 'm', version: 1 });
  const second = await packBytes(dir, data, keys, { name: 'm', version: 1 });
  await copyFile(first.signaturePath, second.signaturePath);
  await assert.rejects(
    verifyPackage(second.packagePath, { publicKeys: [keys.signer.publicKey] }),
    code('EG_SIGNATURE_MISMATCH'),
  );
});

test('a missing or malformed signature file is refused, and no key means no use', async (t) => {
  const { keys, pkg } = await setup(t);
  await writeFile(pkg.signaturePath, '{"payloadType":"x"}');
  await assert.rejects(
    verifyPackage(pkg.packagePath, { publicKeys: [keys.signer.publicKey] }),
    code('EG_SIGNATURE_INVALID'),
  );
  await writeFile(pkg.signaturePath, 'not json');
  await assert.rejects(
    verifyPackage(pkg.packagePath, { publicKeys: [keys.signer.publicKey] }),
    code('EG_SIGNATURE_INVALID'),
  );
  await assert.rejects(
    verifyPackage(pkg.packagePath, {
      publicKeys: [keys.signer.publicKey],
      signaturePath: pkg.signaturePath + '.missing',
    }),
    code('EG_SIGNATURE_INVALID'),
  );
  await assert.rejects(verifyPackage(pkg.packagePath, { publicKeys: [] }), code('EG_USAGE'));
});

test('an envelope whose payload is not an OMS statement is refused even when validly signed', async (t) => {
  const { keys, pkg } = await setup(t);
  const env = signEnvelope(IN_TOTO_PAYLOAD_TYPE, Buffer.from('{"_type":"something else"}'), keys.signer);
  await writeFile(pkg.signaturePath, JSON.stringify(env));
  await assert.rejects(
    verifyPackage(pkg.packagePath, { publicKeys: [keys.signer.publicKey] }),
    code('EG_SIGNATURE_INVALID'),
  );
});
