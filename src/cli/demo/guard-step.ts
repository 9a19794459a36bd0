/**
 * Demo step of the adversarial-input guard: both demo models from their protected packages (in
 * memory), the committed calibrated profile, and a handful of inputs: legitimate digits pass,
 * noise and an inverted digit are rejected by validation, and a stored FGSM adversarial example
 * (which fools the primary model) is rejected by validation and flagged by feature squeezing.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { readPublicSigningKey } from '../../crypto/index.ts';
import { guardConfig, type GuardResult } from '../../guard/index.ts';
import { checkInput, guardModelSet, loadGuardProfile, openModelSet } from '../../runtime/index.ts';
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
    // The CNN (more accurate) is the primary; the MLP is the ensemble member and the fallback.
    const models = await openModelSet({
      models: { primary: ctx.state.fallbackPackagePath!, ensemble: ctx.state.packagePath! },
      publicKeys: [await readPublicSigningKey(ctx.state.publisherPubPath!)],
      contentKey: { file: ctx.state.contentKeyPath! },
    });
    const cnn = models.primary.metadata;
    const mlp = models.ensemble!.metadata;
    try {
      // The whole pipeline calibrated to a 4% false-positive budget (`guard calibrate --fpr 0.04`): the combiner decides.
      const profile = await loadGuardProfile(join(ctx.fixtures, 'guard', 'mnist-cnn.pipeline.profile.json'));
      const guarded = { ...models, guard: guardModelSet(models, { config: guardConfig(), profile }) };
      const pl = profile.pipeline!;
      const cb = profile.combiner;
      ctx.say(
        `profile: calibrated on 1,000 held-out MNIST digits to a ${pl.fpr * 100}% false-positive budget for the whole pipeline` +
          (cb
            ? ` (version ${profile.version}): the calibrated combiner (Fisher's sum of -ln p over the six statistics, the ensemble and both squeezers' distances as p-values) flags or rejects above ${cb.threshold.toFixed(2)} ` +
              `(cross-validated ${(cb.crossValidatedFpr * 100).toFixed(1)}%, at most ${(cb.upperBound * 100).toFixed(1)}% with ${pl.fprConfidence * 100}% confidence; 3.5% on 2,000 other digits in bench/guard-eval.ts)`
            : ` (cross-validated ${(pl.crossValidatedFpr * 100).toFixed(1)}%, at most ${(pl.upperBound * 100).toFixed(1)}% with ${pl.fprConfidence * 100}% confidence): ` +
              `confidence < ${pl.confidenceThreshold.toFixed(3)}, ensemble L1 > ${pl.ensembleThreshold!.toFixed(3)}, squeezing > ${profile.squeeze!.threshold.toFixed(3)} flag`),
      );
      ctx.command(
        `guard check --model ${cnn.name}.egm --ensemble ${mlp.name}.egm --key model.key --pub publisher.pub --profile fixtures/guard/mnist-cnn.pipeline.profile.json --input <image>`,
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
        const { result: r } = await checkInput(guarded, { kind: 'image', bytes });
        ctx.say(`${name}: ${describe(r)}`);
        results.push({
          input: name,
          verdict: r.verdict,
          answer: r.answer?.label ?? null,
          reasons: r.reasons.map((x) => x.message),
        });
      }
      // The adversarial example fools the primary model; without validation, squeezing still catches it
      // (its own calibrated threshold: the combiner's sum is calibrated for all the stages together).
      const squeezeOnly = guardModelSet(models, {
        config: guardConfig({
          combiner: { enabled: false },
          validation: { enabled: false },
          confidence: { enabled: false },
          ensemble: { enabled: false },
        }),
        profile,
      });
      const { result: r } = await checkInput(
        { ...models, guard: squeezeOnly },
        { kind: 'image', bytes: inputs[4]![1] },
      );
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
      await models.release();
    }
  },
};
