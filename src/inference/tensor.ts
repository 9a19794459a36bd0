/**
 * Tensors sent by a caller (a JSON body, a .npy file) checked against what the model's metadata
 * declares, input by input: the name, the element type, the dimensions (a symbolic dimension takes
 * any size) and every value (finite, integral for integer types, within the type's bounds and the
 * declared range). Only a tensor that passes is copied into the typed array ONNX Runtime takes.
 */
import { EdgeguardError } from '../errors/index.ts';
import type { ImagePreprocessing, TensorDescription, TensorDtype, ValueRange } from '../model/index.ts';

/** At most this many values in one input tensor (64 MiB of float32). */
export const MAX_TENSOR_VALUES = 16_777_216;
/** At most this many dimensions per tensor. */
export const MAX_TENSOR_RANK = 8;

export type TypedValues =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

/** A tensor as the caller sent it: values from JSON (numbers) or from a .npy file (typed, with its dtype). */
export interface SuppliedTensor {
  /** Absent when the caller sent a single tensor for a model with one input. */
  name?: string;
  dims: readonly number[];
  values: readonly number[] | TypedValues;
  /** The element type the bytes were written in (.npy); JSON numbers have none. */
  dtype?: TensorDtype;
}

/** A checked input, ready for ONNX Runtime. The caller wipes `data` when done. */
export interface ModelInput {
  name: string;
  dtype: TensorDtype;
  dims: number[];
  data: TypedValues;
}

const INTEGER_BOUNDS: Partial<Record<TensorDtype, [number, number]>> = {
  int8: [-128, 127],
  uint8: [0, 255],
  int16: [-32768, 32767],
  uint16: [0, 65535],
  int32: [-2147483648, 2147483647],
  uint32: [0, 4294967295],
  int64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  uint64: [0, Number.MAX_SAFE_INTEGER],
  bool: [0, 1],
};

type TypedArrayConstructor = new (buffer: ArrayBuffer, offset?: number, length?: number) => TypedValues;

const TYPED_ARRAY: Record<Exclude<TensorDtype, 'float16'>, TypedArrayConstructor> = {
  float32: Float32Array,
  float64: Float64Array,
  int8: Int8Array,
  uint8: Uint8Array,
  bool: Uint8Array,
  int16: Int16Array,
  uint16: Uint16Array,
  int32: Int32Array,
  uint32: Uint32Array,
  int64: BigInt64Array,
  uint64: BigUint64Array,
};

/** A typed array of `dtype` over `n` elements of `buffer` (zeroed, when no buffer is given). */
export function typedValues(dtype: TensorDtype, n: number, buffer?: ArrayBuffer): TypedValues {
  if (dtype === 'float16')
    throw new EdgeguardError(
      'EG_UNSUPPORTED',
      'float16 model inputs cannot be sent as tensors yet; export the model with a float32 input.',
    );
  const Typed = TYPED_ARRAY[dtype];
  return new Typed(buffer ?? new ArrayBuffer(n * BYTES_PER_ELEMENT[dtype]), 0, n);
}

const BYTES_PER_ELEMENT: Record<Exclude<TensorDtype, 'float16'>, number> = {
  float32: 4,
  float64: 8,
  int8: 1,
  uint8: 1,
  bool: 1,
  int16: 2,
  uint16: 2,
  int32: 4,
  uint32: 4,
  int64: 8,
  uint64: 8,
};

/** The range of an input that declares none: 0..1 (pixel / 255) for an image model, none otherwise. */
export function defaultInputRange(pre: ImagePreprocessing | undefined): ValueRange | undefined {
  return pre ? { min: 0, max: 1 } : undefined;
}

/** Overwrite values that came from a caller. */
export function wipeValues(values: TypedValues | number[]): void {
  if (values instanceof BigInt64Array || values instanceof BigUint64Array) values.fill(0n);
  else values.fill(0);
}

/** Wipe a checked input set (the typed arrays hold caller data). */
export function wipeModelInputs(inputs: readonly ModelInput[]): void {
  for (const i of inputs) wipeValues(i.data);
}

/** The number of values dims describe, refusing more than MAX_TENSOR_VALUES. */
export function countValues(dims: readonly number[], what: string): number {
  if (dims.length > MAX_TENSOR_RANK)
    throw new EdgeguardError(
      'EG_INPUT',
      `${what} has ${dims.length} dimensions; at most ${MAX_TENSOR_RANK} are taken.`,
    );
  let n = 1;
  for (const d of dims) {
    if (!Number.isSafeInteger(d) || d < 0)
      throw new EdgeguardError('EG_INPUT', `${what} has dimension ${d}; dimensions are non-negative integers.`);
    n *= d;
    if (n > MAX_TENSOR_VALUES)
      throw new EdgeguardError('EG_INPUT', `${what} has more than ${MAX_TENSOR_VALUES} values; send a smaller tensor.`);
  }
  return n;
}

/** Pair the supplied tensors with the declared inputs by name (one unnamed tensor for a one-input model). */
function pairByName(
  declared: readonly TensorDescription[],
  supplied: readonly SuppliedTensor[],
): Array<[TensorDescription, SuppliedTensor]> {
  const names = declared.map((d) => d.name).join(', ');
  if (supplied.length === 1 && supplied[0]!.name === undefined) {
    if (declared.length !== 1)
      throw new EdgeguardError(
        'EG_INPUT',
        `the model takes ${declared.length} inputs (${names}); send each by name ({"inputs":{"NAME":{...}}}).`,
      );
    return [[declared[0]!, supplied[0]!]];
  }
  const byName = new Map(supplied.map((s) => [s.name, s]));
  for (const s of supplied)
    if (!declared.some((d) => d.name === s.name))
      throw new EdgeguardError('EG_INPUT', `the model has no input "${s.name}"; it takes ${names}.`);
  return declared.map((d) => {
    const s = byName.get(d.name);
    if (!s) throw new EdgeguardError('EG_INPUT', `input "${d.name}" is missing; the model takes ${names}.`);
    return [d, s];
  });
}

/** The dims must have the declared rank; a fixed dimension must match, a symbolic one (-1, a name) takes any size. */
function checkDims(d: TensorDescription, dims: readonly number[]): void {
  const want = d.shape;
  const fits =
    want.length === 0 ||
    (want.length === dims.length && want.every((w, i) => typeof w !== 'number' || w < 0 || w === dims[i]));
  if (!fits)
    throw new EdgeguardError(
      'EG_INPUT',
      `input "${d.name}" has dims [${dims.join(',')}]; the model takes [${want.map((w) => (w === -1 ? '?' : w)).join(',')}].`,
    );
}

function checkValue(v: number, i: number, d: TensorDescription, range: ValueRange | undefined): void {
  const bounds = INTEGER_BOUNDS[d.dtype];
  if (!Number.isFinite(v) || (bounds && (!Number.isInteger(v) || v < bounds[0] || v > bounds[1])))
    throw new EdgeguardError(
      'EG_INPUT',
      `input "${d.name}" value ${i} is ${v}; ${d.dtype} takes ${bounds ? `integers within ${bounds[0]}..${bounds[1]}` : 'finite numbers'}.`,
    );
  if (range && (v < range.min || v > range.max))
    throw new EdgeguardError(
      'EG_INPUT',
      `input "${d.name}" value ${i} is ${v}, outside the model's declared range ${range.min}..${range.max}.`,
    );
}

function checkOne(d: TensorDescription, s: SuppliedTensor, defaultRange: ValueRange | undefined): ModelInput {
  if (s.dtype !== undefined && s.dtype !== d.dtype)
    throw new EdgeguardError('EG_INPUT', `input "${d.name}" was sent as ${s.dtype}; the model takes ${d.dtype}.`);
  checkDims(d, s.dims);
  const n = countValues(s.dims, `input "${d.name}"`);
  if (s.values.length !== n)
    throw new EdgeguardError(
      'EG_INPUT',
      `input "${d.name}" has ${s.values.length} values; dims [${s.dims.join(',')}] need ${n}.`,
    );
  const data = typedValues(d.dtype, n);
  const range = d.range ?? defaultRange;
  const big = data instanceof BigInt64Array || data instanceof BigUint64Array;
  try {
    for (let i = 0; i < n; i++) {
      const v = Number(s.values[i]!);
      checkValue(v, i, d, range);
      data[i] = (big ? BigInt(v) : v) as never;
    }
  } catch (e) {
    wipeValues(data);
    throw e;
  }
  return { name: d.name, dtype: d.dtype, dims: [...s.dims], data };
}

/**
 * Check supplied tensors against the declared inputs; returns one checked input per declared
 * input, in declaration order. `defaultRange` applies to inputs that declare none.
 */
export function checkModelInputs(
  declared: readonly TensorDescription[],
  supplied: readonly SuppliedTensor[],
  defaultRange?: ValueRange,
): ModelInput[] {
  if (declared.length === 0)
    throw new EdgeguardError(
      'EG_CONFIG',
      'the model metadata declares no inputs; repack it with inputs (name, dtype, shape) to send tensors.',
    );
  const checked: ModelInput[] = [];
  try {
    for (const [d, s] of pairByName(declared, supplied)) checked.push(checkOne(d, s, defaultRange));
  } catch (e) {
    wipeModelInputs(checked);
    throw e;
  }
  return checked;
}
