/**
 * The guard's view of a model: a function from one input tensor (the model's own layout and
 * scale) to class probabilities. It wraps an ONNX Runtime session, a LoadedModel from a
 * protected package, or anything else that classifies.
 */
import { EdgeguardError } from '../errors/index.ts';
import { ort, toProbabilities, type LoadedModel, type ModelInput } from '../inference/index.ts';

/** `inputs`, when given, are the checked inputs of a model that does not take one image tensor. */
export type Classifier = (input: Float32Array, inputs?: readonly ModelInput[]) => Promise<Float32Array>;

export interface SessionClassifierOptions {
  inputName?: string;
  outputName?: string;
  /** Input dimensions including batch, e.g. [1, 1, 28, 28]. */
  dims: number[];
}

function asProbabilities(values: Float32Array): Float32Array {
  return Float32Array.from(toProbabilities(values));
}

/** A classifier over a raw ONNX Runtime session (softmax applied when the output is logits). */
export function sessionClassifier(session: ort.InferenceSession, o: SessionClassifierOptions): Classifier {
  const inputName = o.inputName ?? session.inputNames[0];
  const outputName = o.outputName ?? session.outputNames[0];
  if (!inputName || !outputName)
    throw new EdgeguardError('EG_MODEL_LOAD', 'the ONNX session has no input or no output.');
  const expected = o.dims.reduce((a, b) => a * b, 1);
  return async (input) => {
    if (input.length !== expected) {
      throw new EdgeguardError(
        'EG_INPUT',
        `the guard got ${input.length} input values; the model takes [${o.dims.join(',')}] (${expected}).`,
      );
    }
    let result: ort.InferenceSession.OnnxValueMapType;
    try {
      result = await session.run({ [inputName]: new ort.Tensor('float32', input, o.dims) });
    } catch (e) {
      throw new EdgeguardError('EG_INFERENCE', `inference failed (${(e as Error).message.split('\n')[0]}).`, {
        cause: e,
      });
    }
    const out = result[outputName];
    if (!out || !(out.data instanceof Float32Array))
      throw new EdgeguardError('EG_INFERENCE', `the model did not produce a float32 output "${outputName}".`);
    return asProbabilities(out.data);
  };
}

/**
 * A classifier over a model loaded (in memory) from a protected package. Input dimensions come
 * from the metadata's input shape (symbolic dimensions taken as 1), or from its preprocessing.
 */
export function loadedModelClassifier(model: LoadedModel): Classifier {
  const declared = model.metadata.inputs[0]?.shape ?? [];
  const pre = model.metadata.preprocessing;
  let dims = declared.map((d) => (typeof d === 'number' && d > 0 ? d : 1));
  if (dims.length === 0 && pre) {
    const c = pre.colorSpace === 'grayscale' ? 1 : 3;
    dims = pre.layout === 'NCHW' ? [1, c, pre.height, pre.width] : [1, pre.height, pre.width, c];
  }
  if (dims.length === 0)
    throw new EdgeguardError(
      'EG_CONFIG',
      `model ${model.metadata.name} declares neither an input shape nor preprocessing; the guard cannot feed it.`,
    );
  const expected = dims.reduce((a, b) => a * b, 1);
  return async (input, inputs) => {
    if (inputs) return asProbabilities(await model.runInputs(inputs));
    if (input.length !== expected)
      throw new EdgeguardError(
        'EG_INPUT',
        `the guard got ${input.length} input values; model ${model.metadata.name} takes [${dims.join(',')}].`,
      );
    return asProbabilities(await model.run({ data: input, dims }));
  };
}

export function argmax(p: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < p.length; i++) if (p[i]! > p[best]!) best = i;
  return best;
}
