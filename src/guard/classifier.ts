/**
 * The guard's view of a model: a function from one input tensor (the model's own layout and
 * scale) to class probabilities. It wraps an ONNX Runtime session, a LoadedModel from a
 * protected package, or anything else that classifies.
 */
import { EdgeguardError } from '../errors/index.ts';
import { ort, type LoadedModel, type ModelInput } from '../inference/index.ts';

/**
 * `inputs`, when given, are the checked inputs of a model that does not take one image tensor.
 * `batch`, present when the model's batch dimension is symbolic, classifies `count` single inputs
 * held back to back in one buffer in one run (the guard's input and its squeezed copies): one
 * call instead of three, and the same probabilities per input.
 */
export interface Classifier {
  (input: Float32Array, inputs?: readonly ModelInput[]): Promise<Float32Array>;
  batch?: (inputs: Float32Array, count: number) => Promise<Float32Array[]>;
}

export interface SessionClassifierOptions {
  inputName?: string;
  outputName?: string;
  /** Input dimensions including batch, e.g. [1, 1, 28, 28]. */
  dims: number[];
}

/**
 * The model's output as probabilities: as they are when they already are (every value in 0..1,
 * summing to 1 within 1e-3), else their softmax. toProbabilities (src/inference) computed on
 * a typed array, without the intermediate number arrays: the same values.
 */
function asProbabilities(values: Float32Array): Float32Array {
  let sum = 0;
  let inRange = true;
  let max = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    sum += v;
    if (!(v >= 0 && v <= 1)) inRange = false;
    max = Math.max(max, v);
  }
  if (inRange && Math.abs(sum - 1) < 1e-3) return values.slice();
  const out = new Float64Array(values.length);
  let total = 0;
  for (let i = 0; i < values.length; i++) {
    out[i] = Math.exp(values[i]! - max);
    total += out[i]!;
  }
  return Float32Array.from(out, (e) => e / total);
}

/** Whether the session's input takes any batch size (its first dimension symbolic). */
function takesBatches(session: ort.InferenceSession, inputName: string): boolean {
  const m = session.inputMetadata.find((x) => x.name === inputName);
  const first = m?.isTensor ? m.shape[0] : undefined;
  return typeof first === 'string' || first === -1;
}

/** The number of values in `count` inputs of `single` values each, checked against `inputs`. */
function batchLength(inputs: Float32Array, count: number, single: number, what: string): void {
  if (!Number.isInteger(count) || count < 1 || inputs.length !== count * single)
    throw new EdgeguardError(
      'EG_INPUT',
      `the guard got ${inputs.length} input values for ${count} inputs; ${what} takes ${single} each.`,
    );
}

/** The rows of a batch's output, each as probabilities. */
function splitRows(output: Float32Array, rows: number): Float32Array[] {
  const k = output.length / rows;
  const out: Float32Array[] = [];
  for (let i = 0; i < rows; i++) out.push(asProbabilities(output.subarray(i * k, (i + 1) * k)));
  return out;
}

/** A classifier over a raw ONNX Runtime session (softmax applied when the output is logits). */
export function sessionClassifier(session: ort.InferenceSession, o: SessionClassifierOptions): Classifier {
  const inputName = o.inputName ?? session.inputNames[0];
  const outputName = o.outputName ?? session.outputNames[0];
  if (!inputName || !outputName)
    throw new EdgeguardError('EG_MODEL_LOAD', 'the ONNX session has no input or no output.');
  const expected = o.dims.reduce((a, b) => a * b, 1);
  const run = async (data: Float32Array, dims: number[]): Promise<Float32Array> => {
    let result: ort.InferenceSession.OnnxValueMapType;
    try {
      result = await session.run({ [inputName]: new ort.Tensor('float32', data, dims) });
    } catch (e) {
      throw new EdgeguardError('EG_INFERENCE', `inference failed (${(e as Error).message.split('\n')[0]}).`, {
        cause: e,
      });
    }
    const out = result[outputName];
    if (!out || !(out.data instanceof Float32Array))
      throw new EdgeguardError('EG_INFERENCE', `the model did not produce a float32 output "${outputName}".`);
    return out.data;
  };
  const classify: Classifier = async (input) => {
    if (input.length !== expected) {
      throw new EdgeguardError(
        'EG_INPUT',
        `the guard got ${input.length} input values; the model takes [${o.dims.join(',')}] (${expected}).`,
      );
    }
    return asProbabilities(await run(input, o.dims));
  };
  if (o.dims[0] === 1 && takesBatches(session, inputName))
    classify.batch = async (inputs, count) => {
      batchLength(inputs, count, expected, `the model [${o.dims.join(',')}]`);
      return splitRows(await run(inputs, [count, ...o.dims.slice(1)]), count);
    };
  return classify;
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
  const classify: Classifier = async (input, inputs) => {
    if (inputs) return asProbabilities(await model.runInputs(inputs));
    if (input.length !== expected)
      throw new EdgeguardError(
        'EG_INPUT',
        `the guard got ${input.length} input values; model ${model.metadata.name} takes [${dims.join(',')}].`,
      );
    return asProbabilities(await model.run({ data: input, dims }));
  };
  if (dims[0] === 1 && takesBatches(model.session, model.inputName))
    classify.batch = async (inputs, count) => {
      batchLength(inputs, count, expected, `model ${model.metadata.name}`);
      return splitRows(await model.run({ data: inputs, dims: [count, ...dims.slice(1)] }), count);
    };
  return classify;
}

export function argmax(p: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < p.length; i++) if (p[i]! > p[best]!) best = i;
  return best;
}
