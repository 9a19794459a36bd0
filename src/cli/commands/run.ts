/**
 * `edgeguard run`: verify, decrypt into memory, load into ONNX Runtime from the buffer, then
 * classify inputs: images (decoded in memory) or tensors (.npy or JSON, checked against the
 * model's declared inputs). Nothing plaintext is written anywhere.
 */
import { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { wipe } from '../../crypto/index.ts';
import { EdgeguardError, fsError } from '../../errors/index.ts';
import {
  checkModelInputs,
  defaultInputRange,
  loadProtectedModel,
  resolveExecutionProviders,
  wipeModelInputs,
  wipeValues,
  type Classification,
  type LoadedModel,
} from '../../inference/index.ts';
import { resolveContentKey } from '../../keystore/index.ts';
import { collect } from '../args.ts';
import { contentKeySource } from '../content-key-source.ts';
import { readTrustedKeys } from '../model-options.ts';
import { Output, globalOptions } from '../output.ts';
import { readTensorFile } from '../tensor-file.ts';

interface RunOpts {
  key?: string;
  wrappedKey?: string;
  device?: string;
  pub?: string[];
  sig?: string;
  input?: string[];
  tensor?: string[];
  executionProvider?: string[];
}

export function registerRunCommand(program: Command): void {
  program
    .command('run')
    .description('verify and decrypt a model into memory, then classify images or tensors with it')
    .argument('<package>', '.egm file')
    .option('--key <file>', 'content key file')
    .option('--wrapped-key <file>', 'content key wrapped to this device (use with --device)')
    .option('--device <dir>', 'device directory from `edgeguard device init`')
    .option('--pub <file>', 'trusted publisher public key (repeatable)', collect)
    .option('--sig <file>', 'signature envelope (default PACKAGE.sig.json)')
    .option('--input <image>', 'input image, PNG or JPEG (repeatable)', collect)
    .option('--tensor <file>', 'input tensor(s), .npy or JSON {"tensor":{..}} / {"inputs":{..}} (repeatable)', collect)
    .option(
      '--execution-provider <name>',
      'ONNX Runtime execution provider: cpu (default), cuda, tensorrt, openvino (repeatable, by preference)',
      collect,
    )
    .action(async (pkgPath: string, opts: RunOpts, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      if (!opts.input?.length && !opts.tensor?.length)
        throw new EdgeguardError(
          'EG_USAGE',
          'give the inputs to classify: --input IMAGE or --tensor FILE (repeatable).',
        );
      const executionProviders = resolveExecutionProviders(opts.executionProvider);
      const publicKeys = await readTrustedKeys(opts.pub);
      const t0 = performance.now();
      const { key, posture } = await resolveContentKey(contentKeySource(opts));
      const t1 = performance.now();
      let model;
      try {
        model = await loadProtectedModel(pkgPath, {
          publicKeys,
          contentKey: key,
          signaturePath: opts.sig,
          executionProviders,
        });
      } finally {
        wipe(key.bytes);
      }
      const t2 = performance.now();
      try {
        const results = [];
        for (const path of opts.input ?? []) results.push(await timed(path, () => classifyImageFile(model, path)));
        for (const path of opts.tensor ?? []) results.push(await timed(path, () => classifyTensorFile(model, path)));
        const m = model.metadata;
        out.result(
          {
            ok: true,
            model: {
              name: m.name,
              version: m.version,
              label: m.label ?? null,
              headerSha256: model.provenance.headerSha256,
              signedBy: model.provenance.signedBy,
            },
            key: posture,
            executionProviders: model.executionProviders,
            predictions: results,
            timings: { keyMs: t1 - t0, loadMs: t2 - t1 },
          },
          [
            `model ${m.name} v${m.version} verified (signed by ${model.provenance.signedBy.slice(0, 16)}…) and loaded from memory in ${(t2 - t1).toFixed(0)} ms on ${model.executionProviders.join(', ')}`,
            `key: ${posture.label}`,
            ...results.map((r) => `${r.input}: ${r.label} (confidence ${r.confidence.toFixed(3)})`),
          ],
        );
      } finally {
        await model.release();
      }
    });
}

async function timed(input: string, classify: () => Promise<Classification>) {
  const s = performance.now();
  const c = await classify();
  return { input, label: c.label, confidence: c.confidence, scores: c.scores, inferenceMs: performance.now() - s };
}

async function classifyImageFile(model: LoadedModel, path: string): Promise<Classification> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw fsError(e, path, 'read the input');
  }
  try {
    return await model.classifyImage(bytes);
  } finally {
    bytes.fill(0);
  }
}

async function classifyTensorFile(model: LoadedModel, path: string): Promise<Classification> {
  const supplied = await readTensorFile(path);
  try {
    const m = model.metadata;
    const inputs = checkModelInputs(m.inputs, supplied, defaultInputRange(m.preprocessing));
    try {
      return await model.classifyInputs(inputs);
    } finally {
      wipeModelInputs(inputs);
    }
  } finally {
    for (const t of supplied) wipeValues(t.values as number[]);
  }
}
