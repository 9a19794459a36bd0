/**
 * A tensor file for `run --tensor`: NumPy .npy (recognised by its magic) or the JSON tensor forms
 * of docs/formats.md. Both parsers are strict and bounded; see src/inference.
 */
import { readFile } from 'node:fs/promises';
import { EdgeguardError, fsError } from '../errors/index.ts';
import { parseNpy, parseTensorJson, type SuppliedTensor } from '../inference/index.ts';

const NPY_MAGIC = Buffer.from('\x93NUMPY', 'latin1');

/** Read and parse one tensor file; the caller wipes the returned values. */
export async function readTensorFile(path: string): Promise<SuppliedTensor[]> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw fsError(e, path, 'read the tensor file');
  }
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
