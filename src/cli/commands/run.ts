/**
 * `edgeguard run`: verify, decrypt into memory, load into ONNX Runtime from the buffer, decode the
 * input image in memory, infer, print the prediction. Nothing plaintext is written anywhere.
 */
import { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { wipe } from '../../crypto/index.ts';
import { fsError } from '../../errors/index.ts';
import { loadProtectedModel } from '../../inference/index.ts';
import { resolveContentKey } from '../../keystore/index.ts';
import { collect } from '../args.ts';
import { contentKeySource } from '../content-key-source.ts';
import { readTrustedKeys } from '../model-options.ts';
import { Output, globalOptions } from '../output.ts';

interface RunOpts {
  key?: string;
  wrappedKey?: string;
  device?: string;
  pub?: string[];
  sig?: string;
  input: string[];
}

export function registerRunCommand(program: Command): void {
  program
    .command('run')
    .description('verify and decrypt a model into memory, then classify images with it')
    .argument('<package>', '.egm file')
    .option('--key <file>', 'content key file')
    .option('--wrapped-key <file>', 'content key wrapped to this device (use with --device)')
    .option('--device <dir>', 'device directory from `edgeguard device init`')
    .option('--pub <file>', 'trusted publisher public key (repeatable)', collect)
    .option('--sig <file>', 'signature envelope (default PACKAGE.sig.json)')
    .requiredOption('--input <image>', 'input image, PNG or JPEG (repeatable)', collect)
    .action(async (pkgPath: string, opts: RunOpts, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      const publicKeys = await readTrustedKeys(opts.pub);
      const t0 = performance.now();
      const { key, posture } = await resolveContentKey(contentKeySource(opts));
      const t1 = performance.now();
      let model;
      try {
        model = await loadProtectedModel(pkgPath, { publicKeys, contentKey: key, signaturePath: opts.sig });
      } finally {
        wipe(key.bytes);
      }
      const t2 = performance.now();
      try {
        const results = [];
        for (const inputPath of opts.input) {
          let bytes: Buffer;
          try {
            bytes = await readFile(inputPath);
          } catch (e) {
            throw fsError(e, inputPath, 'read the input');
          }
          const s = performance.now();
          try {
            const c = await model.classifyImage(bytes);
            results.push({
              input: inputPath,
              label: c.label,
              confidence: c.confidence,
              scores: c.scores,
              inferenceMs: performance.now() - s,
            });
          } finally {
            bytes.fill(0);
          }
        }
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
            predictions: results,
            timings: { keyMs: t1 - t0, loadMs: t2 - t1 },
          },
          [
            `model ${m.name} v${m.version} verified (signed by ${model.provenance.signedBy.slice(0, 16)}…) and loaded from memory in ${(t2 - t1).toFixed(0)} ms`,
            `key: ${posture.label}`,
            ...results.map((r) => `${r.input}: ${r.label} (confidence ${r.confidence.toFixed(3)})`),
          ],
        );
      } finally {
        await model.release();
      }
    });
}
