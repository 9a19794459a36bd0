/**
 * Demo step of the adversarial-input guard: both demo models from their protected packages (in
 * memory), the committed calibrated profile, and a handful of inputs: legitimate digits pass,
 * noise and an inverted digit are rejected by validation, and a stored FGSM adversarial example
 * (which fools the primary model) is rejected by validation and flagged by feature squeezing.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { readContentKeyFile, readPublicSigningKey, wipe } from '../../crypto/index.ts';
import { decodeImage, loadProtectedModel, pixelsToTensor, type LoadedModel } from '../../inference/index.ts';
import {
  Guard,
  guardConfig,
  guardInputShape,
  loadedModelClassifier,
  parseProfile,
  type GuardResult,
} from '../../guard/index.ts';
import type { DemoStep } from './context.ts';

function describe(r: GuardResult): string {
  const answer = r.answer ? `${r.answer.label} from the ${r.answer.source} model` : 'no answer';
  const why = r.reasons.length
    ? ` (${r.reasons
        .slice(0, 2)
        .map((x) => x.message)
        .join('; ')}${r.reasons.length > 2 ? '; …' : ''})`
    : '';
  return `${r.verdict.toUpperCase()}: ${answer}${why}`;
}

export const guardStep: DemoStep = {
  id: 'guard',
  title: 'Adversarial-input guard: validation, confidence, ensemble, feature squeezing',
  async run(ctx) {
    const pub = await readPublicSigningKey(ctx.state.publisherPubPath!);
    const contentKey = await readContentKeyFile(ctx.state.contentKeyPath!);
    const models: LoadedModel[] = [];
    try {
      // The CNN (more accurate) is the primary; the MLP is the ensemble member and the fallback.
      models.push(await loadProtectedModel(ctx.state.fallbackPackagePath!, { publicKeys: [pub], contentKey }));
      models.push(await loadProtectedModel(ctx.state.packagePath!, { publicKeys: [pub], contentKey }));
    } catch (e) {
      await Promise.all(models.map((m) => m.release()));
      throw e;
    } finally {
      wipe(contentKey.bytes);
    }
    const [cnn, mlp] = models as [LoadedModel, LoadedModel];
    try {
      // The whole pipeline calibrated to a 4% false-positive budget (`guard calibrate --fpr 0.04`).
      const profilePath = join(ctx.fixtures, 'guard', 'mnist-cnn.pipeline.profile.json');
      const profile = parseProfile(await readFile(profilePath));
      const pre = cnn.metadata.preprocessing!;
      const guard = new Guard({
        config: guardConfig(),
        profile,
        shape: guardInputShape(pre),
        primary: loadedModelClassifier(cnn),
        ensemble: loadedModelClassifier(mlp),
        ...(cnn.metadata.outputs[0]?.labels ? { labels: cnn.metadata.outputs[0].labels } : {}),
      });
      const pl = profile.pipeline!;
      ctx.say(
        `profile: calibrated on 1,000 held-out MNIST digits to a ${pl.fpr * 100}% false-positive budget for the whole pipeline ` +
          `(cross-validated ${(pl.crossValidatedFpr * 100).toFixed(1)}%, at most ${(pl.upperBound * 100).toFixed(1)}% with ${pl.fprConfidence * 100}% confidence; 2.8% on 2,000 other digits in bench/guard-eval.ts): ` +
          `confidence < ${pl.confidenceThreshold.toFixed(3)}, ensemble L1 > ${pl.ensembleThreshold!.toFixed(3)}, squeezing > ${profile.squeeze!.threshold.toFixed(3)} flag`,
      );
      ctx.command(
        `guard check --model ${cnn.metadata.name}.egm --ensemble ${mlp.metadata.name}.egm --key model.key --pub publisher.pub --profile fixtures/guard/mnist-cnn.pipeline.profile.json --input <image>`,
      );
      const noise = Buffer.alloc(784);
      for (let i = 0; i < noise.length; i++) noise[i] = (i * 7919 + 13) % 251;
      const seven = await readFile(join(ctx.fixtures, 'digits', '7-0.png'));
      const invertedSeven = await sharp(seven).negate().png().toBuffer();
      const inputs: Array<[string, Buffer]> = [
        ['digits/3-0.png', await readFile(join(ctx.fixtures, 'digits', '3-0.png'))],
        ['digits/7-0.png', seven],
        [
          'noise (in memory)',
          await sharp(noise, { raw: { width: 28, height: 28, channels: 1 } })
            .png()
            .toBuffer(),
        ],
        ['inverted 7 (in memory)', invertedSeven],
        ['guard/fgsm-4-as-8.png', await readFile(join(ctx.fixtures, 'guard', 'fgsm-4-as-8.png'))],
      ];
      const results: Array<{ input: string; verdict: string; answer: string | null; reasons: string[] }> = [];
      for (const [name, bytes] of inputs) {
        const image = await decodeImage(bytes, pre);
        const r = await guard.check({ image, tensor: pixelsToTensor(image, pre).data });
        ctx.say(`${name}: ${describe(r)}`);
        results.push({
          input: name,
          verdict: r.verdict,
          answer: r.answer?.label ?? null,
          reasons: r.reasons.map((x) => x.message),
        });
      }
      // The adversarial example fools the primary model; without validation, squeezing still catches it.
      const fgsm = inputs[4]![1];
      const image = await decodeImage(fgsm, pre);
      const squeezeOnly = new Guard({
        config: guardConfig({
          validation: { enabled: false },
          confidence: { enabled: false },
          ensemble: { enabled: false },
        }),
        profile,
        shape: guardInputShape(pre),
        primary: loadedModelClassifier(cnn),
        ensemble: loadedModelClassifier(mlp),
      });
      const r = await squeezeOnly.check({ image, tensor: pixelsToTensor(image, pre).data });
      ctx.say(
        `guard/fgsm-4-as-8.png, squeezing alone: the primary says ${r.primary!.label} (${r.primary!.confidence.toFixed(3)}); ${describe(r)}`,
      );
      if (
        results[0]!.verdict !== 'accept' ||
        results[2]!.verdict !== 'reject' ||
        results[4]!.verdict !== 'reject' ||
        r.verdict !== 'flag'
      ) {
        throw new Error('the guard did not give the expected verdicts on the demo inputs');
      }
      return {
        inputs: results,
        fgsmSqueezeOnly: { verdict: r.verdict, primary: r.primary!.label, squeezeScore: r.stages.squeeze!.score },
      };
    } finally {
      await cnn.release();
      await mlp.release();
    }
  },
};
