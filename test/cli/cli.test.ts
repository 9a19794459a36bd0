/** The CLI as an operator and a pipeline meet it: help, JSON, exit codes, one-line errors. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { FIXTURES, tempDir } from '../helpers/workspace.ts';
import { runCli } from '../helpers/cli.ts';
import { NATIVE_AVAILABLE } from '../helpers/engines.ts';

test('--help lists the commands and exits 0', async () => {
  const r = await runCli(['--help']);
  assert.equal(r.code, 0);
  for (const c of ['key', 'model', 'run', 'demo']) assert.match(r.stdout, new RegExp(`\\b${c}\\b`));
  const sub = await runCli(['model', 'pack', '--help']);
  assert.equal(sub.code, 0);
  assert.match(sub.stdout, /--chunk-size/);
});

test('usage errors exit 2 with one line, no stack trace', async () => {
  const r = await runCli(['model', 'pack']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^EG_USAGE: /);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.doesNotMatch(r.stderr, /at .*\.ts:\d+/);
});

test('key, pack, inspect, verify, unpack, run: the whole operator flow through the CLI with --json', async (t) => {
  const dir = await tempDir(t);
  const p = (f: string) => join(dir, f);
  assert.equal((await runCli(['key', 'new', '--type', 'content', '-o', p('model.key')])).code, 0);
  assert.equal((await stat(p('model.key'))).mode & 0o777, 0o600);
  const kk = JSON.parse(
    (await runCli(['key', 'new', '--type', 'signing', '--alg', 'ed25519', '-o', p('publisher'), '--json'])).stdout,
  );
  assert.equal(kk.algorithm, 'ed25519');
  assert.equal((await stat(p('publisher.key'))).mode & 0o777, 0o600);

  const pack = await runCli([
    'model',
    'pack',
    join(FIXTURES, 'models', 'mnist-mlp.onnx'),
    '--key',
    p('model.key'),
    '--sign',
    p('publisher.key'),
    '--name',
    'mnist',
    '--version',
    '3',
    '--label',
    'demo',
    '--meta',
    join(FIXTURES, 'models', 'mnist.meta.yaml'),
    '--cipher',
    'chacha20-poly1305',
    '--chunk-size',
    '64k',
    '-o',
    p('mnist.egm'),
    '--json',
  ]);
  assert.equal(pack.code, 0, pack.stderr);
  const packed = JSON.parse(pack.stdout);
  assert.equal(packed.header.cipherSuite, 'chacha20-poly1305');
  assert.equal(packed.header.chunkSize, 65536);
  await stat(p('mnist.egm.sig.json'));

  const inspect = JSON.parse((await runCli(['model', 'inspect', p('mnist.egm'), '--json'])).stdout);
  assert.equal(inspect.header.metadata.version, 3);
  assert.equal(inspect.signature.subjects[0].name, 'mnist');

  const verify = await runCli([
    'model',
    'verify',
    p('mnist.egm'),
    '--pub',
    p('publisher.pub'),
    '--key',
    p('model.key'),
  ]);
  assert.equal(verify.code, 0, verify.stderr);
  assert.match(verify.stdout, /chunks authenticated/);
  // Which engine opened the chunks is reported; EDGEGUARD_NATIVE=0 turns the native one off.
  assert.match(
    verify.stdout,
    NATIVE_AVAILABLE ? /opened by the native shard opener/ : /opened by JavaScript worker threads/,
  );
  const jsVerify = await runCli(
    ['model', 'verify', p('mnist.egm'), '--pub', p('publisher.pub'), '--key', p('model.key'), '--json'],
    { env: { EDGEGUARD_NATIVE: '0' } },
  );
  assert.equal(jsVerify.code, 0, jsVerify.stderr);
  assert.deepEqual(JSON.parse(jsVerify.stdout).engine, { engine: 'js', reason: 'turned off (EDGEGUARD_NATIVE=0)' });
  // Without the content key only the signature and header are checked, and it says so.
  const sigOnly = await runCli(['model', 'verify', p('mnist.egm'), '--pub', p('publisher.pub')]);
  assert.equal(sigOnly.code, 0, sigOnly.stderr);
  assert.match(sigOnly.stdout, /^SIGNATURE OK .*contents NOT checked/);
  assert.doesNotMatch(sigOnly.stdout, /^OK /m);

  const unpack = await runCli([
    'model',
    'unpack',
    p('mnist.egm'),
    '--key',
    p('model.key'),
    '--pub',
    p('publisher.pub'),
    '-o',
    p('out.onnx'),
  ]);
  assert.equal(unpack.code, 0, unpack.stderr);
  assert.match(unpack.stderr, /PLAINTEXT/);
  assert.ok((await readFile(p('out.onnx'))).equals(await readFile(join(FIXTURES, 'models', 'mnist-mlp.onnx'))));

  // Tamper with one byte in the last chunk: verify, unpack and run refuse with EG_TAMPERED, exit 3.
  const fh = await open(p('mnist.egm'), 'r+');
  const size = (await fh.stat()).size;
  const b = Buffer.alloc(1);
  await fh.read(b, 0, 1, size - 40);
  b[0]! ^= 0x80;
  await fh.write(b, 0, 1, size - 40);
  await fh.close();
  const v2 = await runCli(['model', 'verify', p('mnist.egm'), '--pub', p('publisher.pub'), '--key', p('model.key')]);
  assert.equal(v2.code, 3);
  assert.match(v2.stderr, /^EG_TAMPERED: chunk \d+ failed authentication; the file was modified or truncated/);
  const u2 = await runCli([
    'model',
    'unpack',
    p('mnist.egm'),
    '--key',
    p('model.key'),
    '--pub',
    p('publisher.pub'),
    '-o',
    p('out2.onnx'),
  ]);
  assert.equal(u2.code, 3);
  await assert.rejects(stat(p('out2.onnx')));
  const r2 = await runCli([
    'run',
    p('mnist.egm'),
    '--key',
    p('model.key'),
    '--pub',
    p('publisher.pub'),
    '--input',
    p('out.onnx'),
    '--json',
  ]);
  assert.equal(r2.code, 3);
  assert.equal(JSON.parse(r2.stdout).error.code, 'EG_TAMPERED');
});

test('debug shows the stack trace; the default does not', async (t) => {
  const dir = await tempDir(t);
  const r = await runCli(['model', 'inspect', join(dir, 'missing.egm'), '--debug']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^EG_NOT_FOUND: /);
  assert.match(r.stderr, /at /);
});
