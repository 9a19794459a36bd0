/**
 * Files the CLI reads whole from an operator (metadata YAML, tensor files, the connection's CA,
 * client pair and config) are read under a cap: one past it exits 2 with EG_FILE_TOO_LARGE and a
 * sentence, without buffering it. The big files are sparse, so they cost no disk.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runCli, type CliResult } from '../helpers/cli.ts';
import { FIXTURES, tempDir } from '../helpers/workspace.ts';

/** A sparse file of `size` bytes. */
async function sparseFile(path: string, size: number): Promise<string> {
  const h = await open(path, 'w');
  await h.truncate(size);
  await h.close();
  return path;
}

function assertTooLarge(r: CliResult, file: string): void {
  assert.equal(r.code, 2, `${r.stdout}${r.stderr}`);
  assert.match(r.stderr, /^EG_FILE_TOO_LARGE: .* bytes, over the \d+ bytes such a file may have; /);
  assert.ok(r.stderr.includes(file), r.stderr);
  assert.equal(r.stderr.trim().split('\n').length, 1, `one line, no stack: ${r.stderr}`);
}

test('model pack --meta, guard --meta and run --tensor refuse a file past the cap', async (t) => {
  const dir = await tempDir(t);
  const p = (f: string) => join(dir, f);
  const bigYaml = await sparseFile(p('big.meta.yaml'), 1024 * 1024 * 1024);
  const bigTensor = await sparseFile(p('big.npy'), 1024 * 1024 * 1024);
  assert.equal((await runCli(['key', 'new', '--type', 'content', '-o', p('model.key')])).code, 0);
  assert.equal((await runCli(['key', 'new', '--type', 'signing', '-o', p('publisher')])).code, 0);
  const packArgs = [
    ...['model', 'pack', join(FIXTURES, 'models', 'pump-anomaly.onnx'), '--key', p('model.key')],
    ...['--sign', p('publisher.key'), '--name', 'pump', '--version', '1', '-o', p('pump.egm')],
  ];

  assertTooLarge(await runCli([...packArgs, '--meta', bigYaml]), bigYaml);

  const guard = await runCli([
    ...['guard', 'check', '--onnx', join(FIXTURES, 'models', 'mnist-cnn.onnx'), '--meta', bigYaml],
    ...['--input', join(FIXTURES, 'digits', '3-0.png')],
  ]);
  assertTooLarge(guard, bigYaml);

  const pack = await runCli([...packArgs, '--meta', join(FIXTURES, 'models', 'pump-anomaly.meta.yaml')]);
  assert.equal(pack.code, 0, pack.stderr);
  const run = await runCli([
    ...['run', p('pump.egm'), '--key', p('model.key'), '--pub', p('publisher.pub')],
    ...['--tensor', bigTensor],
  ]);
  assertTooLarge(run, bigTensor);
});

test('the connection options refuse a CA, client pair or --config file past the cap', async (t) => {
  const dir = await tempDir(t);
  const big = await sparseFile(join(dir, 'big.pem'), 1024 * 1024 * 1024);
  const bigConfig = await sparseFile(join(dir, 'admin.yaml'), 1024 * 1024 * 1024);
  // The files are read before any connection is made; their contents need not be PEM to be refused.
  const small = join(dir, 'small.pem');
  await writeFile(small, 'not read as PEM\n');
  const list = (...args: string[]) => runCli(['device', 'list', '--server', 'https://127.0.0.1:9', ...args]);
  assertTooLarge(await list('--ca', big, '--client-cert', small, '--client-key', small), big);
  assertTooLarge(await list('--ca', small, '--client-cert', small, '--client-key', big), big);
  assertTooLarge(await list('--config', bigConfig), bigConfig);
});

test('attest policy, review list and review show refuse a policy, item or key file past the cap', async (t) => {
  const dir = await tempDir(t);
  const p = (f: string) => join(dir, f);
  const bigPolicy = await sparseFile(p('big-policy.yaml'), 1024 * 1024 * 1024);
  await writeFile(p('log.bin'), 'not read: the policy is refused first');
  assertTooLarge(await runCli(['attest', 'policy', 'check', '--log', p('log.bin'), '--policy', bigPolicy]), bigPolicy);

  const items = p('items');
  await mkdir(items);
  const bigItem = await sparseFile(
    join(items, '0000000000000001-0123456789abcdef0123456789abcdef.egr'),
    65 * 1024 * 1024,
  );
  assertTooLarge(await runCli(['review', 'list', '--dir', items]), bigItem);

  const bigKey = await sparseFile(p('review.key'), 1024 * 1024 * 1024);
  await chmod(bigKey, 0o600);
  assertTooLarge(
    await runCli(['review', 'show', '0123456789abcdef0123456789abcdef', '--dir', items, '--review-key', bigKey]),
    bigKey,
  );
});
