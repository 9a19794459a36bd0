/**
 * A model from a protected package, running in ONNX Runtime: the package is verified and
 * decrypted into memory, the session is created from that buffer
 * (InferenceSession.create(Uint8Array); ONNX Runtime keeps its own copy), and our plaintext
 * buffer is wiped at once. No plaintext model ever touches the file system.
 */
import { ort } from './ort.ts';
import { EdgeguardError } from '../errors/index.ts';
import type { ContentKey } from '../crypto/index.ts';
import {
  TENSOR_DTYPES,
  decryptPackageToMemory,
  type ModelMetadata,
  type TensorDescription,
  type TensorDtype,
  type TrustOptions,
} from '../model/index.ts';
import { imageToTensor, type Tensor } from './preprocess.ts';
import type { ExecutionProvider } from './providers.ts';
import type { ModelInput } from './tensor.ts';

export interface Classification {
  /** Index of the highest score. */
  index: number;
  label: string;
  confidence: number;
  scores: number[];
}

export class LoadedModel {
  /** Runs in progress: release() waits for them, since freeing a session under a running inference is unsafe. */
  private readonly running = new Set<Promise<unknown>>();
  private released = false;

  constructor(
    readonly session: ort.InferenceSession,
    readonly metadata: ModelMetadata,
    readonly provenance: { headerSha256: string; signedBy: string; packagePath?: string },
    readonly executionProviders: readonly ExecutionProvider[] = ['cpu'],
  ) {}

  get inputName(): string {
    return this.metadata.inputs[0]?.name ?? this.session.inputNames[0]!;
  }

  get outputName(): string {
    return this.metadata.outputs[0]?.name ?? this.session.outputNames[0]!;
  }

  /** Run the model on one float32 tensor; returns its first output's values. */
  async run(input: Tensor): Promise<Float32Array> {
    return this.runInputs([{ name: this.inputName, dtype: 'float32', dims: input.dims, data: input.data }]);
  }

  /** Run the model on checked inputs (checkModelInputs), one per model input; returns its first output's values. */
  async runInputs(inputs: readonly ModelInput[]): Promise<Float32Array> {
    if (this.released)
      throw new EdgeguardError('EG_INFERENCE', `model ${this.metadata.name} was released (shutdown or tamper lock).`);
    let result: ort.InferenceSession.OnnxValueMapType;
    const feeds = Object.fromEntries(inputs.map((i) => [i.name, new ort.Tensor(i.dtype, i.data, i.dims)]));
    const running = this.session.run(feeds);
    this.running.add(running);
    try {
      result = await running;
    } catch (e) {
      const shapes = inputs.map((i) => `${i.name} [${i.dims.join(',')}]`).join(', ');
      throw new EdgeguardError(
        'EG_INFERENCE',
        `inference failed: the input ${shapes} does not fit model ${this.metadata.name} (${(e as Error).message.split('\n')[0]}).`,
        { cause: e },
      );
    } finally {
      this.running.delete(running);
    }
    const out = result[this.outputName];
    if (!out || !(out.data instanceof Float32Array)) {
      throw new EdgeguardError(
        'EG_INFERENCE',
        `model ${this.metadata.name} did not produce a float32 output "${this.outputName}".`,
      );
    }
    return out.data;
  }

  /** Classify: scores are returned as probabilities (softmax is applied unless they already sum to 1). */
  async classify(input: Tensor): Promise<Classification> {
    return this.classification(await this.run(input));
  }

  /** Classify checked inputs (checkModelInputs), for models that do not take one image tensor. */
  async classifyInputs(inputs: readonly ModelInput[]): Promise<Classification> {
    return this.classification(await this.runInputs(inputs));
  }

  private classification(output: Float32Array): Classification {
    const scores = toProbabilities(output);
    let index = 0;
    for (let i = 1; i < scores.length; i++) if (scores[i]! > scores[index]!) index = i;
    const labels = this.metadata.outputs[0]?.labels;
    return { index, label: labels?.[index] ?? String(index), confidence: scores[index]!, scores };
  }

  async classifyImage(bytes: Uint8Array): Promise<Classification> {
    return this.classify(await this.imageTensor(bytes));
  }

  async imageTensor(bytes: Uint8Array): Promise<Tensor> {
    const pre = this.metadata.preprocessing;
    if (!pre)
      throw new EdgeguardError(
        'EG_INPUT',
        `model ${this.metadata.name} declares no image preprocessing; send a tensor instead of an image.`,
      );
    return imageToTensor(bytes, pre);
  }

  /** Refuse new runs, wait for those in progress, then free the session (once). */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await Promise.allSettled([...this.running]);
    await this.session.release();
  }
}

export function toProbabilities(values: Float32Array): number[] {
  const arr = Array.from(values);
  const sum = arr.reduce((a, b) => a + b, 0);
  if (arr.every((v) => v >= 0 && v <= 1) && Math.abs(sum - 1) < 1e-3) return arr;
  const max = Math.max(...arr);
  const exps = arr.map((v) => Math.exp(v - max));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((v) => v / total);
}

/** Create a session from plaintext model bytes, wiping them as soon as ONNX Runtime has its copy. */
export async function createSessionFromMemory(
  plaintext: Buffer,
  what: string,
  executionProviders: readonly ExecutionProvider[] = ['cpu'],
): Promise<ort.InferenceSession> {
  try {
    return await ort.InferenceSession.create(plaintext, {
      graphOptimizationLevel: 'all',
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
      executionProviders: [...executionProviders],
    });
  } catch (e) {
    const onCpu = executionProviders.length === 1 && executionProviders[0] === 'cpu';
    throw new EdgeguardError(
      'EG_MODEL_LOAD',
      `ONNX Runtime could not load ${what}${onCpu ? ': it is not a valid ONNX model' : ` with execution providers ${executionProviders.join(', ')} (is the provider's runtime library installed?)`} (${(e as Error).message.split('\n')[0]}).`,
      { cause: e },
    );
  } finally {
    plaintext.fill(0);
  }
}

export interface LoadOptions extends TrustOptions {
  contentKey: ContentKey;
  /** In order of preference; checked with resolveExecutionProviders. Default: the CPU. */
  executionProviders?: readonly ExecutionProvider[] | undefined;
}

export async function loadProtectedModel(packagePath: string, o: LoadOptions): Promise<LoadedModel> {
  const dec = await decryptPackageToMemory(packagePath, o);
  if (dec.header.metadata.format !== 'onnx') {
    dec.plaintext.fill(0);
    throw new EdgeguardError(
      'EG_MODEL_LOAD',
      `package ${packagePath} holds a model of format "${dec.header.metadata.format}", not ONNX.`,
    );
  }
  const providers = o.executionProviders ?? ['cpu'];
  const session = await createSessionFromMemory(dec.plaintext, `the model in ${packagePath}`, providers);
  return new LoadedModel(
    session,
    dec.header.metadata,
    { headerSha256: dec.headerSha256, signedBy: dec.signature.keyId, packagePath },
    providers,
  );
}

interface OrtValueMetadata {
  name: string;
  type?: string;
  shape?: Array<number | string>;
}

/** One input or output as metadata: its element type (numeric types only) and dims (symbolic ones by name). */
function describeValue(name: string, list: OrtValueMetadata[] | undefined): TensorDescription {
  const m = list?.find((x) => x.name === name);
  const type = m?.type ?? 'float32';
  if (!(TENSOR_DTYPES as readonly string[]).includes(type))
    throw new EdgeguardError(
      'EG_UNSUPPORTED',
      `the model's tensor "${name}" has element type ${type}; edgeguard models take and give numeric tensors only.`,
    );
  const shape = (m?.shape ?? []).map((d) => (typeof d === 'number' ? d : String(d)));
  return { name, dtype: type as TensorDtype, shape };
}

/** Describe an ONNX model's inputs and outputs (used when packing, from the plaintext file). */
export async function describeOnnx(
  bytes: Buffer,
): Promise<{ inputs: ModelMetadata['inputs']; outputs: ModelMetadata['outputs'] }> {
  const copy = Buffer.from(bytes);
  const session = await createSessionFromMemory(copy, 'the model');
  try {
    const meta = session as unknown as { inputMetadata?: OrtValueMetadata[]; outputMetadata?: OrtValueMetadata[] };
    return {
      inputs: session.inputNames.map((name) => describeValue(name, meta.inputMetadata)),
      outputs: session.outputNames.map((name) => describeValue(name, meta.outputMetadata)),
    };
  } finally {
    await session.release();
  }
}
