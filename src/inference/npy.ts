/**
 * NumPy .npy files, versions 1.0 and 2.0 (numpy.lib.format, "Format Version 1.0" and "2.0"):
 *
 *   "\x93NUMPY" | major u8 | minor u8 | header length (u16 LE in 1.0, u32 LE in 2.0) |
 *   header: an ASCII Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (1, 12), }
 *   padded with spaces and ended by "\n" | the array's bytes, C order
 *
 * Bytes from outside: every length is bounded, the header is read by a small strict parser
 * (exactly the three keys, no other syntax), the data must be exactly shape x itemsize bytes, and
 * anything else is a typed EG_FORMAT error. Little-endian (or byte-order-free) numeric types only.
 */
import { EdgeguardError } from '../errors/index.ts';
import type { TensorDtype } from '../model/index.ts';
import { MAX_TENSOR_VALUES, countValues, typedValues, type TypedValues } from './tensor.ts';

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]);
/** numpy itself refuses headers longer than this by default (max_header_size). */
const MAX_HEADER_BYTES = 10_000;
/** The largest .npy file parseNpy can take: a version 2.0 preamble, the longest header, the most values of the widest type. */
export const MAX_NPY_FILE_BYTES = 12 + MAX_HEADER_BYTES + MAX_TENSOR_VALUES * 8;

const DESCR: Record<string, { dtype: TensorDtype; size: number }> = {
  '<f4': { dtype: 'float32', size: 4 },
  '<f8': { dtype: 'float64', size: 8 },
  '|i1': { dtype: 'int8', size: 1 },
  '|u1': { dtype: 'uint8', size: 1 },
  '<i2': { dtype: 'int16', size: 2 },
  '<u2': { dtype: 'uint16', size: 2 },
  '<i4': { dtype: 'int32', size: 4 },
  '<u4': { dtype: 'uint32', size: 4 },
  '<i8': { dtype: 'int64', size: 8 },
  '<u8': { dtype: 'uint64', size: 8 },
  '|b1': { dtype: 'bool', size: 1 },
};

export interface NpyArray {
  dtype: TensorDtype;
  dims: number[];
  /** A copy of the values (the caller wipes it and the source bytes). */
  values: TypedValues;
}

function bad(message: string): EdgeguardError {
  return new EdgeguardError('EG_FORMAT', `the .npy data is invalid: ${message}.`);
}

/** Parse one .npy array from `bytes`; trailing bytes are refused. */
export function parseNpy(bytes: Uint8Array): NpyArray {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < 10 || !buf.subarray(0, 6).equals(MAGIC)) throw bad('it does not start with "\\x93NUMPY"');
  const major = buf[6]!;
  if (major !== 1 && major !== 2) throw bad(`format version ${major}.${buf[7]} is not supported (1.0 and 2.0 are)`);
  const prefix = major === 1 ? 10 : 12;
  if (buf.length < prefix) throw bad('it ends inside the preamble');
  const headerLength = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  if (headerLength > MAX_HEADER_BYTES) throw bad(`the header is ${headerLength} bytes, above ${MAX_HEADER_BYTES}`);
  if (buf.length < prefix + headerLength) throw bad('it ends inside the header');
  const header = parseHeader(buf.subarray(prefix, prefix + headerLength));
  const type = DESCR[header.descr];
  if (!type) throw bad(`element type '${header.descr}' is not supported (little-endian numbers and bool only)`);
  if (header.fortranOrder) throw bad('Fortran-ordered arrays are not supported; save with C order');
  let n: number;
  try {
    n = countValues(header.shape, 'the array');
  } catch (e) {
    throw bad((e as Error).message.replace(/\.$/, ''));
  }
  const body = buf.subarray(prefix + headerLength);
  if (body.length !== n * type.size)
    throw bad(`shape (${header.shape.join(', ')}) needs ${n * type.size} data bytes, the file has ${body.length}`);
  return { dtype: type.dtype, dims: header.shape, values: copyValues(body, type.dtype, n) };
}

function copyValues(body: Buffer, dtype: TensorDtype, n: number): TypedValues {
  // A fresh, aligned buffer: the data offset in the file need not be aligned for the element size.
  const own = new Uint8Array(body.length);
  own.set(body);
  if (dtype === 'bool') for (const b of own) if (b > 1) throw bad(`a bool element holds ${b}`);
  return typedValues(dtype, n, own.buffer);
}

interface NpyHeader {
  descr: string;
  fortranOrder: boolean;
  shape: number[];
}

/** The header dict, read strictly: {'descr': STR, 'fortran_order': BOOL, 'shape': TUPLE}, any order, once each. */
function parseHeader(raw: Buffer): NpyHeader {
  for (const b of raw) if (b > 0x7e || (b < 0x20 && b !== 0x0a)) throw bad('the header is not printable ASCII');
  const text = raw.toString('latin1');
  if (!text.endsWith('\n')) throw bad('the header does not end with a newline');
  const p = new HeaderReader(text.replace(/[ \n]+$/, ''));
  const seen = new Map<string, unknown>();
  p.expect('{');
  while (!p.tryRead('}')) {
    const key = p.string();
    if (seen.has(key)) throw bad(`header key '${key}' appears twice`);
    p.expect(':');
    if (key === 'descr') seen.set(key, p.string());
    else if (key === 'fortran_order') seen.set(key, p.boolean());
    else if (key === 'shape') seen.set(key, p.tuple());
    else throw bad(`header key '${key}' is unknown`);
    if (!p.tryRead(',')) {
      p.expect('}');
      break;
    }
  }
  p.end();
  if (seen.size !== 3) throw bad("the header must have 'descr', 'fortran_order' and 'shape'");
  return {
    descr: seen.get('descr') as string,
    fortranOrder: seen.get('fortran_order') as boolean,
    shape: seen.get('shape') as number[],
  };
}

class HeaderReader {
  private at = 0;
  constructor(private readonly text: string) {}

  private skipSpaces(): void {
    while (this.text[this.at] === ' ') this.at++;
  }

  tryRead(token: string): boolean {
    this.skipSpaces();
    if (!this.text.startsWith(token, this.at)) return false;
    this.at += token.length;
    return true;
  }

  expect(token: string): void {
    if (!this.tryRead(token)) throw bad(`the header has no '${token}' at offset ${this.at}`);
  }

  string(): string {
    this.skipSpaces();
    const m = /^'([^'\\]{0,64})'/.exec(this.text.slice(this.at, this.at + 67));
    if (!m) throw bad(`the header has no quoted string at offset ${this.at}`);
    this.at += m[0].length;
    return m[1]!;
  }

  boolean(): boolean {
    if (this.tryRead('True')) return true;
    if (this.tryRead('False')) return false;
    throw bad(`the header has no True or False at offset ${this.at}`);
  }

  /** A tuple of non-negative integers: (), (5,), (1, 12). */
  tuple(): number[] {
    this.expect('(');
    const dims: number[] = [];
    while (!this.tryRead(')')) {
      this.skipSpaces();
      const m = /^\d{1,15}/.exec(this.text.slice(this.at, this.at + 16));
      if (!m) throw bad(`the shape has no integer at offset ${this.at}`);
      this.at += m[0].length;
      dims.push(Number(m[0]));
      if (dims.length > 32) throw bad('the shape has too many dimensions');
      if (!this.tryRead(',')) {
        this.expect(')');
        if (dims.length === 1) throw bad('a one-dimensional shape needs a trailing comma, as in (5,)');
        break;
      }
    }
    return dims;
  }

  end(): void {
    this.skipSpaces();
    if (this.at !== this.text.length) throw bad(`the header has extra text at offset ${this.at}`);
  }
}

/** Write one array as .npy version 1.0 (for tests, scripts and `run --tensor` examples). */
export function encodeNpy(dtype: TensorDtype, dims: readonly number[], values: TypedValues): Buffer {
  const descr = Object.entries(DESCR).find(([, t]) => t.dtype === dtype)?.[0];
  if (!descr) throw new EdgeguardError('EG_UNSUPPORTED', `${dtype} cannot be written as .npy here.`);
  const shape = dims.length === 1 ? `(${dims[0]},)` : `(${dims.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const pre = Buffer.alloc(10);
  MAGIC.copy(pre);
  pre[6] = 1;
  pre[7] = 0;
  pre.writeUInt16LE(header.length, 8);
  return Buffer.concat([
    pre,
    Buffer.from(header, 'latin1'),
    Buffer.from(values.buffer, values.byteOffset, values.byteLength),
  ]);
}
