/**
 * A tensor file for `run --tensor`: NumPy .npy (recognised by its magic) or the JSON tensor forms
 * of docs/formats.md. Both parsers are strict and bounded; see src/inference.
 */
import { EdgeguardError, readBounded } from '../errors/index.ts';
import { MAX_NPY_FILE_BYTES, parseNpy, parseTensorJson, type SuppliedTensor } from '../inference/index.ts';

const NPY_MAGIC = Buffer.from('\x93NUMPY', 'latin1');
/**
 * No tensor file larger than the largest .npy that could parse (MAX_TENSOR_VALUES values of 8
 * bytes, about 128 MiB) is read. JSON text has no such bound (a value's digits, white space), and
 * at a few bytes per value the same cap takes tens of millions of values, more than one input may
 * have: a tensor that big belongs in a .npy file.
 */
const MAX_TENSOR_FILE_BYTES = MAX_NPY_FILE_BYTES;

/** Read and parse one tensor file; the caller wipes the returned values. */
export async function readTensorFile(path: string): Promise<SuppliedTensor[]> {
  const bytes = await readBounded(path, MAX_TENSOR_FILE_BYTES, 'read the tensor file');
  try {
    if (bytes.subarray(0, NPY_MAGIC.length).equals(NPY_MAGIC)) return [parseNpy(bytes)];
    let value: unknown;
    try {
      value = JSON.parse(bytes.toString('utf8'));
    } catch (e) {
      throw new EdgeguardError('EG_FORMAT', `${path} is neither a .npy file nor valid JSON.`, { cause: e });
    }
    return parseTensorJson(value, path);
  } finally {
    bytes.fill(0);
  }
}
