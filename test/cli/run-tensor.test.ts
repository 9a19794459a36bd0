/**
 * `edgeguard run --tensor` through the compiled CLI, on a model that is not an image classifier
 * (the demo pump sensor model packed with its meta.yaml): JSON and .npy files, the declared range,
 * the execution providers in --json, and typed errors for bad files and unknown providers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { encodeNpy } from '../../src/inference/index.ts';
import { runCli } from '../helpers/cli.ts';
import { FIXTURES, tempDir } from '../helpers/workspace.ts';

test('run --tensor: a pump sensor model answers JSON and .npy readings and refuses bad ones', async (t) => {
  const dir = await tempDir(t);
  const p = (f: string) => join(dir, f);
  assert.equal((await runCli(['key', 'new', '--type', 'content', '-o', p('model.key')])).code, 0);
  assert.equal((await runCli(['key', 'new', '--type', 'signing', '-o', p('publisher')])).code, 0);
  const pack = await runCli([
    ...['model', 'pack', join(FIXTURES, 'models', 'pump-anomaly.onnx'), '--key', p('model.key')],
    ...['--sign', p('publisher.key'), '--name', 'pump', '--version', '1'],
    ...['--meta', join(FIXTURES, 'models', 'pump-anomaly.meta.yaml'), '-o', p('pump.egm')],
  ]);
  assert.equal(pack.code, 0, pack.stderr);
  const run = (...args: string[]) =>
    runCli(['run', p('pump.egm'), '--key', p('model.key'), '--pub', p('publisher.pub'), '--json', ...args]);

  await writeFile(
    p('spike.npy'),
    encodeNpy('float32', [1, 12], Float32Array.from([0, 0, 0, 0, 0, 0, 4, 4, 4, 0, 0, 0])),
  );
  const ok = await run('--tensor', join(FIXTURES, 'sensors', 'normal-0.json'), '--tensor', p('spike.npy'));
  assert.equal(ok.code, 0, ok.stderr);
  const out = JSON.parse(ok.stdout) as { executionProviders: string[]; predictions: Array<{ label: string }> };
  assert.deepEqual(out.executionProviders, ['cpu']);
  assert.deepEqual(
    out.predictions.map((x) => x.label),
    ['normal', 'anomaly'],
  );

  await writeFile(p('hot.json'), JSON.stringify({ tensor: { dims: [1, 12], data: new Array(12).fill(9) } }));
  await writeFile(p('loose.json'), JSON.stringify({ tensor: { dims: [1, 12], data: new Array(12).fill('0') } }));
  await writeFile(p('bad.npy'), Buffer.from('\x93NUMPY\x01\x00', 'latin1'));
  const cases: Array<[string[], number, string]> = [
    [['--tensor', p('hot.json')], 6, 'EG_INPUT'],
    [['--tensor', p('loose.json')], 3, 'EG_FORMAT'],
    [['--tensor', p('bad.npy')], 3, 'EG_FORMAT'],
    [['--input', join(FIXTURES, 'digits', '3-0.png')], 6, 'EG_INPUT'],
    [['--tensor', p('spike.npy'), '--execution-provider', 'quantum'], 2, 'EG_CONFIG'],
    [[], 2, 'EG_USAGE'],
  ];
  for (const [args, code, error] of cases) {
    const r = await run(...args);
    assert.equal(r.code, code, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.equal((JSON.parse(r.stdout) as { error: { code: string } }).error.code, error, args.join(' '));
  }
});

test('demo --only keys,sensor: the sensor model answers its readings and refuses an out-of-range one', async (t) => {
  const dir = await tempDir(t);
  const r = await runCli(['--json', 'demo', '--only', 'keys,sensor', '--dir', dir]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /"outOfRangeRefused":\s*true/);
});
