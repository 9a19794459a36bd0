import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import YAML from 'yaml';
import { packModel, parseModelMetadata } from '../../src/model/index.ts';
import { parseProfile } from '../../src/guard/index.ts';
import { runCli } from '../helpers/cli.ts';
import { FIXTURES, tempDir, writeKeys } from '../helpers/workspace.ts';
import { pngOf } from './fixtures.ts';

async function packDemo(dir: string, keys: Awaited<ReturnType<typeof writeKeys>>, arch: 'cnn' | 'mlp') {
  const meta = YAML.parse(await readFile(join(FIXTURES, 'models', 'mnist.meta.yaml'), 'utf8'));
  const r = await packModel({
    inputPath: join(FIXTURES, 'models', `mnist-${arch}.onnx`),
    outputPath: join(dir, `mnist-${arch}.egm`),
    contentKey: keys.contentKey,
    signer: keys.signer,
    metadata: parseModelMetadata({ ...meta, name: `mnist-${arch}`, version: 1, format: 'onnx' }),
  });
  return r.packagePath;
}

test('guard calibrate and guard check run on protected packages, decrypted in memory', async (t) => {
  const dir = await tempDir(t);
  const keys = await writeKeys(dir);
  const cnn = await packDemo(dir, keys, 'cnn');
  const mlp = await packDemo(dir, keys, 'mlp');
  const profilePath = join(dir, 'profile.json');
  const common = ['--model', cnn, '--ensemble', mlp, '--key', keys.contentKeyPath, '--pub', keys.publicKeyPath];

  // 20 images cannot bound the whole pipeline's rate at 10% (95% confidence): refused, nothing written.
  const calArgs = ['guard', 'calibrate', ...common, '--images', join(FIXTURES, 'digits'), '--fpr', '0.1'];
  const unmet = await runCli([...calArgs, '-o', profilePath]);
  assert.equal(unmet.code, 6, unmet.stderr);
  assert.match(unmet.stderr, /\nEG_GUARD: with 20 images .* about \d+ images \(\d+ more\) would bound it/);
  await assert.rejects(readFile(profilePath), 'no profile is written when the budget is not met');
  const cal = await runCli([...calArgs, '--accept-unmet', '-o', profilePath, '--json']);
  assert.equal(cal.code, 0, cal.stderr);
  assert.equal(JSON.parse(cal.stdout).met, false);
  const profile = parseProfile(await readFile(profilePath));
  assert.equal(profile.samples, 20);
  assert.equal(profile.model?.name, 'mnist-cnn');
  assert.match(profile.model?.sha256 ?? '', /^[0-9a-f]{64}$/);
  assert.ok(profile.squeeze && profile.squeeze.measuredFpr <= 0.1);
  assert.equal(JSON.parse(cal.stdout).samples, 20);
  // --fpr is the whole pipeline's budget; 20 images cannot bound it at 10% (95% confidence): said so.
  assert.equal(profile.pipeline?.fpr, 0.1);
  assert.ok(profile.pipeline.upperBound > 0.1);
  assert.match(
    cal.stderr,
    /warning: with 20 images the pipeline's false-positive rate can only be bounded at .*--accept-unmet/,
  );
  // --squeeze-fpr belongs to per-stage calibration.
  const mixed = await runCli([
    'guard',
    'calibrate',
    ...common,
    '--images',
    join(FIXTURES, 'digits'),
    '--squeeze-fpr',
    '0.02',
    '-o',
    join(dir, 'mixed.json'),
  ]);
  assert.equal(mixed.code, 2);
  assert.match(mixed.stderr, /^EG_USAGE: --squeeze-fpr sets a per-stage rate; add --per-stage/);
  const perStagePath = join(dir, 'per-stage.json');
  const perStage = await runCli([
    'guard',
    'calibrate',
    ...common,
    '--images',
    join(FIXTURES, 'digits'),
    '--per-stage',
    '--fpr',
    '0.1',
    '--squeeze-fpr',
    '0.05',
    '-o',
    perStagePath,
  ]);
  assert.equal(perStage.code, 0, perStage.stderr);
  const ps = parseProfile(await readFile(perStagePath));
  assert.equal(ps.pipeline, undefined);
  assert.deepEqual([ps.validation.fpr, ps.squeeze?.fpr], [0.1, 0.05]);

  // Refuses to overwrite without --force.
  const again = await runCli([
    'guard',
    'calibrate',
    ...common,
    '--images',
    join(FIXTURES, 'digits'),
    '-o',
    profilePath,
  ]);
  assert.equal(again.code, 2);
  assert.match(again.stderr, /^EG_EXISTS: /);

  const noise = join(dir, 'noise.png');
  await writeFile(noise, await pngOf(Array.from({ length: 784 }, (_, i) => ((i * 7919) % 256) / 255)));
  // A reject exits with the guard's status (EG_GUARD: 6); --json still carries every result.
  const check = await runCli([
    'guard',
    'check',
    ...common,
    '--profile',
    profilePath,
    '--input',
    join(FIXTURES, 'digits', '3-0.png'),
    '--input',
    noise,
    '--json',
  ]);
  assert.equal(check.code, 6, check.stderr);
  const doc = JSON.parse(check.stdout) as {
    ok: boolean;
    verdicts: Record<string, number>;
    error: { code: string; message: string };
    results: Array<{
      input: string;
      verdict: string;
      answer?: { label: string };
      reasons: Array<{ stage: string }>;
      stages: Record<string, unknown>;
    }>;
  };
  assert.equal(doc.ok, false);
  assert.deepEqual(doc.verdicts, { accept: 1, flag: 0, reject: 1 });
  assert.equal(doc.error.code, 'EG_GUARD');
  assert.match(doc.error.message, /^1 of 2 inputs were rejected by the guard: .*noise\.png\.$/);
  const results = doc.results;
  assert.equal(results[0]?.verdict, 'accept');
  assert.equal(results[0]?.answer?.label, '3');
  assert.ok(results[0]?.stages.squeeze && results[0]?.stages.ensemble);
  assert.equal(results[1]?.verdict, 'reject');
  // The combiner (a version-3 profile) rejects it on its statistics alone, before any model runs.
  assert.ok(results[1]?.reasons.every((r) => r.stage === 'combined'));
  assert.ok(results[1]?.stages.validation);

  const human = await runCli(['guard', 'check', ...common, '--profile', profilePath, '--input', noise]);
  assert.equal(human.code, 6);
  assert.match(human.stdout, /noise\.png: REJECT -> no answer: /);
  assert.match(human.stderr, /^EG_GUARD: 1 of 1 input was rejected by the guard: .*noise\.png\.\n$/);
  const accepted = await runCli([
    'guard',
    'check',
    ...common,
    '--profile',
    profilePath,
    '--input',
    join(FIXTURES, 'digits', '3-0.png'),
  ]);
  assert.equal(accepted.code, 0, accepted.stderr);
  assert.match(accepted.stdout, /3-0\.png: ACCEPT -> 3 /);
});

test('guard check: a flagged input is answered by the fallback and exits 0', async () => {
  // The committed per-stage profile keeps the seed's rules (0.85, argmax disagreement): 3-1.png,
  // on which the CNN is unsure and the MLP disagrees, is flagged.
  const dev = [
    '--onnx',
    join(FIXTURES, 'models', 'mnist-cnn.onnx'),
    '--meta',
    join(FIXTURES, 'models', 'mnist.meta.yaml'),
    '--ensemble-onnx',
    join(FIXTURES, 'models', 'mnist-mlp.onnx'),
  ];
  const r = await runCli([
    'guard',
    'check',
    ...dev,
    '--profile',
    join(FIXTURES, 'guard', 'mnist-cnn.profile.json'),
    '--input',
    join(FIXTURES, 'digits', '3-1.png'),
    '--json',
  ]);
  assert.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as {
    ok: boolean;
    verdicts: Record<string, number>;
    results: Array<{ verdict: string; answer: { source: string } }>;
  };
  assert.equal(doc.ok, true);
  assert.deepEqual(doc.verdicts, { accept: 0, flag: 1, reject: 0 });
  assert.equal(doc.results[0]?.verdict, 'flag');
  assert.equal(doc.results[0]?.answer.source, 'fallback');
});

test('guard commands fail with a code and a sentence', async (t) => {
  const dir = await tempDir(t);
  const bad = join(dir, 'bad.json');
  await writeFile(bad, '{"kind":"edgeguard-guard-profile","version":1}');
  const dev = [
    '--onnx',
    join(FIXTURES, 'models', 'mnist-cnn.onnx'),
    '--meta',
    join(FIXTURES, 'models', 'mnist.meta.yaml'),
    '--ensemble-onnx',
    join(FIXTURES, 'models', 'mnist-mlp.onnx'),
  ];
  const r1 = await runCli(['guard', 'check', ...dev, '--profile', bad, '--input', join(FIXTURES, 'digits', '3-0.png')]);
  assert.equal(r1.code, 3);
  assert.match(r1.stderr, /^EG_FORMAT: .*bad\.json is invalid at /);
  const r2 = await runCli(['guard', 'check', ...dev, '--input', join(FIXTURES, 'digits', '3-0.png')]);
  assert.equal(r2.code, 2);
  assert.match(r2.stderr, /^EG_CONFIG: input validation is enabled but no calibrated profile/);
  const r3 = await runCli([
    'guard',
    'calibrate',
    '--model',
    'x.egm',
    '--images',
    join(FIXTURES, 'digits'),
    '-o',
    join(dir, 'p.json'),
  ]);
  assert.equal(r3.code, 2);
  assert.match(r3.stderr, /^EG_USAGE: pass the publisher public key/);
  const r4 = await runCli(['guard', 'calibrate', ...dev, '--images', dir, '-o', join(dir, 'p.json')]);
  assert.equal(r4.code, 2);
  assert.match(r4.stderr, /holds no PNG, JPEG or WebP images/);
  const r5 = await runCli([
    'guard',
    'calibrate',
    ...dev,
    '--images',
    join(FIXTURES, 'digits'),
    '--fpr',
    '2',
    '-o',
    join(dir, 'p.json'),
  ]);
  assert.equal(r5.code, 2);
  assert.match(r5.stderr, /^EG_USAGE: .*rate between 0 and 1/);
  const r6 = await runCli([
    'guard',
    'check',
    ...dev,
    '--profile',
    join(FIXTURES, 'guard', 'mnist-cnn.profile.json'),
    '--input',
    bad,
  ]);
  assert.equal(r6.code, 6);
  assert.match(r6.stderr, /^EG_INPUT: .*bad\.json: the input is not an image/);
});
