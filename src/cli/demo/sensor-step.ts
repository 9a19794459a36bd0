/**
 * Demo step: a model that is not an image classifier. The pump sensor anomaly detector takes 12
 * standardised readings; its metadata declares their range, so a reading outside it is refused
 * before the model runs, and the guard applies what fits a tabular model: confidence.
 */
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { readPublicSigningKey } from '../../crypto/index.ts';
import { isEdgeguardError } from '../../errors/index.ts';
import { guardConfig } from '../../guard/index.ts';
import { parseTensorJson } from '../../inference/index.ts';
import { checkInput, openGuardedModel } from '../../runtime/index.ts';
import type { DemoStep } from './context.ts';
import { packDemoModel } from './model-step.ts';

export const sensorStep: DemoStep = {
  id: 'sensor',
  title: 'Not only images: a pump sensor anomaly model, its inputs checked against their declared range',
  async run(ctx) {
    const pkg = await packDemoModel(
      ctx,
      'pump-anomaly.onnx',
      'pump-anomaly',
      1,
      'aes-256-gcm',
      'pump-anomaly.meta.yaml',
    );
    const model = await openGuardedModel({
      models: { primary: pkg.packagePath },
      publicKeys: [await readPublicSigningKey(ctx.state.publisherPubPath!)],
      contentKey: { file: ctx.state.contentKeyPath! },
      guard: guardConfig({ ensemble: { enabled: false } }),
    });
    try {
      const dir = join(ctx.fixtures, 'sensors');
      const files = (await readdir(dir)).filter((f) => f.endsWith('.json')).sort();
      ctx.command(
        `run ${pkg.packagePath} --key model.key --pub publisher.pub --tensor fixtures/sensors/<reading>.json`,
      );
      const verdicts = [];
      for (const f of files) {
        const tensors = parseTensorJson(JSON.parse(await readFile(join(dir, f), 'utf8')), f);
        const { result: r } = await checkInput(model, { kind: 'tensors', tensors });
        verdicts.push({ file: f, verdict: r.verdict, label: r.answer?.label ?? null });
        ctx.say(`${f}: ${r.verdict}, ${r.answer?.label} (confidence ${r.answer?.confidence.toFixed(3)})`);
      }
      const refused = await refuseOutOfRange(ctx, model);
      if (verdicts.some((v) => v.label !== v.file.split('-')[0]) || !refused)
        throw new Error('the sensor model did not give the expected answers on the demo readings');
      return { verdicts, outOfRangeRefused: refused };
    } finally {
      await model.release();
    }
  },
};

/** A stuck sensor reading 9 standard deviations high is outside the declared -6..6: refused with EG_INPUT. */
async function refuseOutOfRange(
  ctx: Parameters<DemoStep['run']>[0],
  model: Parameters<typeof checkInput>[0],
): Promise<boolean> {
  const values = [0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0];
  try {
    await checkInput(model, { kind: 'tensors', tensors: [{ dims: [1, 12], values }] });
    return false;
  } catch (e) {
    if (!isEdgeguardError(e, 'EG_INPUT')) throw e;
    ctx.say(`a stuck vibration sensor (9 sigma): refused: ${e.code}: ${e.message}`);
    return true;
  }
}
