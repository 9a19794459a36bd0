/**
 * The two demo architectures (an MLP and a small CNN for 28x28 MNIST digits), built with
 * TensorFlow.js, and the bridge between them and ONNX:
 *
 *   - exportOnnx(model): writes an ONNX ModelProto (IR 7, opset 13) with onnx-proto. Input `input`
 *     float32 [N,1,28,28] (NCHW), output `probabilities` float32 [N,10] (Softmax is the last node);
 *     the batch N is symbolic so that the guard runs an input and its squeezed copies in one call;
 *     other dims for dense-only models (the sensor model: [1,12] -> [1,2]).
 *   - loadTfFromOnnx(bytes): rebuilds the TensorFlow.js model from an exported file, so that
 *     attacks that need gradients (bench/guard-eval.ts, scripts/make-guard-fixtures.ts) run
 *     against exactly the weights that ship in fixtures/models/.
 *
 * Layout facts this relies on (ONNX operator spec, opset 13):
 *   - Conv weight W is [M, C, kH, kW]; TF.js conv2d kernels are [kH, kW, C, M].
 *   - Gemm computes A*B + C with B [K, N] when transB = 0; TF.js dense kernels are [K, N].
 *   - Flatten(axis=1) of NCHW orders features (c, h, w); TF.js flattens NHWC as (h, w, c), so a
 *     Gemm after a conv gets its rows permuted. With one input channel NCHW [1,1,28,28] and NHWC
 *     [1,28,28,1] are the same bytes, so the model input needs no transpose.
 */
import * as tf from '@tensorflow/tfjs';
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

export type DemoArch = 'mlp' | 'cnn';

export const ONNX_INPUT = 'input';
export const ONNX_OUTPUT = 'probabilities';
const OPSET = 13;
const IR_VERSION = 7;
const FLOAT = 1; // TensorProto.DataType.FLOAT

/** MLP: flatten 784 -> dense 128 ReLU -> dense 10 softmax. */
export function buildMlp(seed = 11, head: 'softmax' | 'linear' = 'softmax'): tf.Sequential {
  const m = tf.sequential({ name: 'mnist_mlp' });
  m.add(tf.layers.flatten({ inputShape: [28, 28, 1] }));
  m.add(
    tf.layers.dense({ units: 128, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed }) }),
  );
  m.add(
    tf.layers.dense({
      units: 10,
      activation: head,
      kernelInitializer: tf.initializers.glorotUniform({ seed: seed + 1 }),
    }),
  );
  return m;
}

/**
 * Small CNN: conv 3x3/2 x8 ReLU -> conv 3x3/2 x16 ReLU -> flatten 576 -> dense 64 ReLU -> dense 10
 * softmax. Strided, few filters: the TF.js cpu backend trains convolutions slowly.
 */
export function buildCnn(seed = 21, head: 'softmax' | 'linear' = 'softmax'): tf.Sequential {
  const m = tf.sequential({ name: 'mnist_cnn' });
  m.add(
    tf.layers.conv2d({
      inputShape: [28, 28, 1],
      filters: 8,
      kernelSize: 3,
      strides: 2,
      padding: 'valid',
      activation: 'relu',
      kernelInitializer: tf.initializers.heNormal({ seed }),
    }),
  );
  m.add(
    tf.layers.conv2d({
      filters: 16,
      kernelSize: 3,
      strides: 2,
      padding: 'valid',
      activation: 'relu',
      kernelInitializer: tf.initializers.heNormal({ seed: seed + 1 }),
    }),
  );
  m.add(tf.layers.flatten());
  m.add(
    tf.layers.dense({
      units: 64,
      activation: 'relu',
      kernelInitializer: tf.initializers.glorotUniform({ seed: seed + 2 }),
    }),
  );
  m.add(
    tf.layers.dense({
      units: 10,
      activation: head,
      kernelInitializer: tf.initializers.glorotUniform({ seed: seed + 3 }),
    }),
  );
  return m;
}

/** `head: 'linear'` drops the final softmax (logits out), for attacks with stable gradients. */
export function buildArch(arch: DemoArch, head: 'softmax' | 'linear' = 'softmax'): tf.Sequential {
  return arch === 'mlp' ? buildMlp(undefined, head) : buildCnn(undefined, head);
}

interface LayerConfigLike {
  activation?: string;
  strides?: number[] | number;
  kernelSize?: number[] | number;
  padding?: string;
}

function pair(v: number[] | number | undefined, fallback: number): [number, number] {
  if (Array.isArray(v)) return [v[0] ?? fallback, v[1] ?? fallback];
  return [v ?? fallback, v ?? fallback];
}

function floatTensor(name: string, dims: number[], data: Float32Array): onnxProto.onnx.ITensorProto {
  const raw = new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  return { name, dims, dataType: FLOAT, rawData: raw }; // raw_data is little-endian IEEE 754
}

/** A float tensor's value info; with `batch`, the first dimension is that symbolic name instead of its number. */
function valueInfo(name: string, dims: number[], batch?: string): onnxProto.onnx.IValueInfoProto {
  const dim = dims.map((d, i) => (i === 0 && batch ? { dimParam: batch } : { dimValue: d }));
  return { name, type: { tensorType: { elemType: FLOAT, shape: { dim } } } };
}

/** Transpose a TF.js conv kernel [kH,kW,C,M] into ONNX [M,C,kH,kW]. */
function convKernelToOnnx(k: Float32Array, kh: number, kw: number, c: number, m: number): Float32Array {
  const out = new Float32Array(k.length);
  for (let y = 0; y < kh; y++)
    for (let x = 0; x < kw; x++)
      for (let ci = 0; ci < c; ci++)
        for (let mi = 0; mi < m; mi++) {
          out[((mi * c + ci) * kh + y) * kw + x] = k[((y * kw + x) * c + ci) * m + mi] as number;
        }
  return out;
}

function convKernelFromOnnx(w: Float32Array, kh: number, kw: number, c: number, m: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let y = 0; y < kh; y++)
    for (let x = 0; x < kw; x++)
      for (let ci = 0; ci < c; ci++)
        for (let mi = 0; mi < m; mi++) {
          out[((y * kw + x) * c + ci) * m + mi] = w[((mi * c + ci) * kh + y) * kw + x] as number;
        }
  return out;
}

/** Row permutation for a dense layer after flatten of an [H,W,C] map: ONNX row -> TF.js row. */
function flattenRowMap(h: number, w: number, c: number): Int32Array {
  const map = new Int32Array(h * w * c);
  for (let ci = 0; ci < c; ci++)
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        map[(ci * h + y) * w + x] = (y * w + x) * c + ci;
      }
  return map;
}

function permuteRows(k: Float32Array, rows: number, cols: number, onnxToTf: Int32Array, toOnnx: boolean): Float32Array {
  const out = new Float32Array(k.length);
  for (let r = 0; r < rows; r++) {
    const t = onnxToTf[r] as number;
    const [dst, src] = toOnnx ? [r, t] : [t, r];
    out.set(k.subarray(src * cols, src * cols + cols), dst * cols);
  }
  return out;
}

/** Walk the layers with their shapes; shared by export and import so they cannot disagree. */
interface LayerPlan {
  index: number;
  layer: tf.layers.Layer;
  kind: 'flatten' | 'conv' | 'dense';
  /** For conv: [kh, kw, c, m, sh, sw]; for dense: [k, n] and the pre-flatten map when needed. */
  dims: number[];
  rowMap?: Int32Array;
  activation: string;
}

/**
 * The graph's input and output dims (with batch); the MNIST models' by default. `batch` names a
 * symbolic first dimension (the dims then give its size for a single input).
 */
export interface OnnxIo {
  input: number[];
  output: number[];
  batch?: string;
}

const MNIST_IO: OnnxIo = { input: [1, 1, 28, 28], output: [1, 10], batch: 'N' };

function plan(model: tf.Sequential, io: OnnxIo): LayerPlan[] {
  const plans: LayerPlan[] = [];
  // current NHWC shape without batch (a one-channel NCHW image is the same bytes)
  let shape: number[] = io.input.length === 4 ? [io.input[2]!, io.input[3]!, io.input[1]!] : io.input.slice(1);
  let flattenedFrom: number[] | undefined;
  model.layers.forEach((layer, index) => {
    const cls = layer.getClassName();
    const cfg = layer.getConfig() as LayerConfigLike;
    if (cls === 'Flatten') {
      flattenedFrom = shape.length === 3 && (shape[2] ?? 1) > 1 ? shape : undefined;
      shape = [shape.reduce((a, b) => a * b, 1)];
      plans.push({ index, layer, kind: 'flatten', dims: [], activation: 'linear' });
    } else if (cls === 'Conv2D') {
      if (cfg.padding !== 'valid') throw new Error('only valid padding is exported');
      const [kh, kw] = pair(cfg.kernelSize, 1);
      const [sh, sw] = pair(cfg.strides, 1);
      const kernel = layer.getWeights()[0];
      if (!kernel) throw new Error('conv layer without kernel');
      const m = kernel.shape[3] as number;
      const c = shape[2] as number;
      plans.push({ index, layer, kind: 'conv', dims: [kh, kw, c, m, sh, sw], activation: cfg.activation ?? 'linear' });
      shape = [Math.floor(((shape[0] as number) - kh) / sh) + 1, Math.floor(((shape[1] as number) - kw) / sw) + 1, m];
    } else if (cls === 'Dense') {
      const kernel = layer.getWeights()[0];
      if (!kernel) throw new Error('dense layer without kernel');
      const [k, n] = kernel.shape as [number, number];
      const p: LayerPlan = { index, layer, kind: 'dense', dims: [k, n], activation: cfg.activation ?? 'linear' };
      if (flattenedFrom)
        p.rowMap = flattenRowMap(flattenedFrom[0] as number, flattenedFrom[1] as number, flattenedFrom[2] as number);
      flattenedFrom = undefined;
      plans.push(p);
      shape = [n];
    } else {
      throw new Error(`layer ${cls} is not exported`);
    }
  });
  return plans;
}

/** Export a trained demo model to ONNX bytes (deterministic for the same weights). */
export function exportOnnx(model: tf.Sequential, arch: string, doc: string, io: OnnxIo = MNIST_IO): Uint8Array {
  const nodes: onnxProto.onnx.INodeProto[] = [];
  const inits: onnxProto.onnx.ITensorProto[] = [];
  let cur = ONNX_INPUT;
  const plans = plan(model, io);
  plans.forEach((p, i) => {
    const isLast = i === plans.length - 1;
    const out = `t${p.index}`;
    if (p.kind === 'flatten') {
      nodes.push({
        opType: 'Flatten',
        input: [cur],
        output: [out],
        name: `flatten${p.index}`,
        attribute: [{ name: 'axis', type: 2, i: 1 }],
      });
      cur = out;
      return;
    }
    const [kernel, bias] = p.layer.getWeights();
    if (!kernel || !bias) throw new Error('layer without kernel and bias');
    const kData = kernel.dataSync() as Float32Array;
    const bData = bias.dataSync() as Float32Array;
    if (p.kind === 'conv') {
      const [kh, kw, c, m, sh, sw] = p.dims as [number, number, number, number, number, number];
      inits.push(floatTensor(`l${p.index}_W`, [m, c, kh, kw], convKernelToOnnx(kData, kh, kw, c, m)));
      inits.push(floatTensor(`l${p.index}_B`, [m], bData));
      nodes.push({
        opType: 'Conv',
        input: [cur, `l${p.index}_W`, `l${p.index}_B`],
        output: [out],
        name: `conv${p.index}`,
        attribute: [
          { name: 'kernel_shape', type: 7, ints: [kh, kw] },
          { name: 'strides', type: 7, ints: [sh, sw] },
          { name: 'pads', type: 7, ints: [0, 0, 0, 0] },
        ],
      });
    } else {
      const [k, n] = p.dims as [number, number];
      const w = p.rowMap ? permuteRows(kData, k, n, p.rowMap, true) : kData;
      inits.push(floatTensor(`l${p.index}_W`, [k, n], w));
      inits.push(floatTensor(`l${p.index}_B`, [n], bData));
      nodes.push({
        opType: 'Gemm',
        input: [cur, `l${p.index}_W`, `l${p.index}_B`],
        output: [out],
        name: `gemm${p.index}`,
      });
    }
    cur = out;
    if (p.activation === 'relu') {
      nodes.push({ opType: 'Relu', input: [cur], output: [`${out}_relu`], name: `relu${p.index}` });
      cur = `${out}_relu`;
    } else if (p.activation === 'softmax') {
      if (!isLast) throw new Error('softmax is only exported as the last node');
      nodes.push({
        opType: 'Softmax',
        input: [cur],
        output: [ONNX_OUTPUT],
        name: 'softmax',
        attribute: [{ name: 'axis', type: 2, i: -1 }],
      });
      cur = ONNX_OUTPUT;
    } else if (p.activation !== 'linear') {
      throw new Error(`activation ${p.activation} is not exported`);
    }
  });
  if (cur !== ONNX_OUTPUT) throw new Error('the model must end in a softmax');
  const modelProto = onnx.ModelProto.create({
    irVersion: IR_VERSION,
    opsetImport: [{ domain: '', version: OPSET }],
    producerName: 'edgeguard scripts/train-demo-models.ts',
    producerVersion: '1',
    modelVersion: 1,
    docString: doc,
    metadataProps: [{ key: 'edgeguard.arch', value: arch }],
    graph: {
      name: model.name,
      node: nodes,
      initializer: inits,
      input: [valueInfo(ONNX_INPUT, io.input, io.batch)],
      output: [valueInfo(ONNX_OUTPUT, io.output, io.batch)],
    },
  });
  return onnx.ModelProto.encode(modelProto).finish();
}

function initializerData(t: onnxProto.onnx.ITensorProto): Float32Array {
  if (t.dataType !== FLOAT || !t.rawData) throw new Error(`initializer ${t.name ?? '?'} is not raw float32`);
  const copy = new Uint8Array(t.rawData); // aligned copy
  return new Float32Array(copy.buffer, 0, copy.byteLength / 4);
}

/**
 * Rebuild the TF.js model of an ONNX file written by exportOnnx (same weights, for gradients).
 * With `head: 'linear'` the model outputs logits: a saturated softmax has float32 gradients of
 * exactly zero, which would make gradient attacks fail for the wrong reason.
 */
export function loadTfFromOnnx(
  bytes: Uint8Array,
  head: 'softmax' | 'linear' = 'softmax',
): { model: tf.Sequential; arch: DemoArch } {
  const proto = onnx.ModelProto.decode(bytes);
  const arch = proto.metadataProps.find((p) => p.key === 'edgeguard.arch')?.value;
  if (arch !== 'mlp' && arch !== 'cnn') throw new Error('not an edgeguard demo model (no edgeguard.arch metadata)');
  const model = buildArch(arch, head);
  const byName = new Map((proto.graph?.initializer ?? []).map((t) => [t.name ?? '', t]));
  for (const p of plan(model, MNIST_IO)) {
    if (p.kind === 'flatten') continue;
    const wT = byName.get(`l${p.index}_W`);
    const bT = byName.get(`l${p.index}_B`);
    if (!wT || !bT) throw new Error(`missing initializers for layer ${p.index}`);
    const w = initializerData(wT);
    const b = initializerData(bT);
    let kernel: tf.Tensor;
    if (p.kind === 'conv') {
      const [kh, kw, c, m] = p.dims as [number, number, number, number];
      kernel = tf.tensor4d(convKernelFromOnnx(w, kh, kw, c, m), [kh, kw, c, m]);
    } else {
      const [k, n] = p.dims as [number, number];
      kernel = tf.tensor2d(p.rowMap ? permuteRows(w, k, n, p.rowMap, false) : w, [k, n]);
    }
    p.layer.setWeights([kernel, tf.tensor1d(b)]);
  }
  return { model, arch };
}
