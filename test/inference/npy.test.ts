/**
 * The .npy parser: files numpy wrote (fixtures/, see README.md), each refusal with EG_FORMAT, and
 * properties over arbitrary bytes and mutated valid files (never anything but a typed error).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { encodeNpy, parseNpy } from '../../src/inference/index.ts';
import { EdgeguardError } from '../../src/errors/index.ts';
import type { TypedValues } from '../../src/inference/index.ts';

const list = (v: TypedValues): Array<number | bigint> => Array.prototype.slice.call(v);

const fixture = (name: string) => readFileSync(new URL(`fixtures/${name}`, import.meta.url));

function assertFormat(bytes: Uint8Array, pattern: RegExp): void {
  assert.throws(
    () => parseNpy(bytes),
    (e: unknown) => e instanceof EdgeguardError && e.code === 'EG_FORMAT' && pattern.test(e.message),
  );
}

test('reads arrays numpy wrote: v1.0 float32, v2.0 int64, bool, a 0-d float64', () => {
  const f = parseNpy(fixture('f32-2x3.npy'));
  assert.equal(f.dtype, 'float32');
  assert.deepEqual(f.dims, [2, 3]);
  assert.deepEqual(list(f.values), [0.5, -1.25, 3, 4, 5, 6]);
  const i = parseNpy(fixture('i64-v2.npy'));
  assert.equal(i.dtype, 'int64');
  assert.deepEqual(list(i.values), [1n, -2n, 3n, 9007199254740991n]);
  const b = parseNpy(fixture('bool-3.npy'));
  assert.equal(b.dtype, 'bool');
  assert.deepEqual(list(b.values), [1, 0, 1]);
  const s = parseNpy(fixture('f64-scalar.npy'));
  assert.deepEqual(s.dims, []);
  assert.deepEqual(list(s.values), [2.5]);
});

test('refuses what it does not read: Fortran order, big-endian, version 3.0', () => {
  assertFormat(fixture('f32-fortran.npy'), /Fortran/);
  assertFormat(fixture('f32-bigendian.npy'), /'>f4' is not supported/);
  assertFormat(fixture('f32-v3.npy'), /version 3\.0/);
});

test('refuses malformed files with EG_FORMAT and a reason', () => {
  const good = fixture('f32-2x3.npy');
  assertFormat(Buffer.from('not numpy at all'), /does not start/);
  assertFormat(good.subarray(0, 9), /does not start|preamble/);
  assertFormat(good.subarray(0, 40), /inside the header/);
  assertFormat(good.subarray(0, good.length - 1), /needs 24 data bytes, the file has 23/);
  assertFormat(Buffer.concat([good, Buffer.from([0])]), /needs 24 data bytes, the file has 25/);
  const withHeader = (h: string, data = Buffer.alloc(0)) => {
    const pre = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, 0, 0]);
    pre.writeUInt16LE(h.length, 8);
    return Buffer.concat([pre, Buffer.from(h, 'latin1'), data]);
  };
  assertFormat(withHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}\n"), /'x' is unknown/);
  assertFormat(withHeader("{'descr': '<f4', 'fortran_order': False}\n"), /must have/);
  assertFormat(withHeader("{'descr': '<f4', 'descr': '<f4', 'shape': (1,)}\n"), /twice/);
  assertFormat(withHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (1)}\n"), /trailing comma/);
  assertFormat(withHeader("{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}\n"), /True or False/);
  assertFormat(withHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}\n"), /no integer/);
  assertFormat(withHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}"), /newline/);
  assertFormat(withHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} x\n"), /extra text/);
  assertFormat(withHeader("{'descr': '|O', 'fortran_order': False, 'shape': (1,)}\n"), /'\|O' is not supported/);
  assertFormat(
    withHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000)}\n"),
    /more than 16777216 values/,
  );
  assertFormat(withHeader("{'descr': '|b1', 'fortran_order': False, 'shape': (1,)}\n", Buffer.from([2])), /bool/);
  const long = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 2, 0, 0, 0, 0, 0]);
  long.writeUInt32LE(0xffffffff, 8);
  assertFormat(long, /above 10000/);
});

test('encodeNpy writes what parseNpy reads (and numpy would: 64-byte aligned header)', () => {
  const bytes = encodeNpy('float32', [3], Float32Array.from([1, 2, 3]));
  assert.equal((bytes.readUInt16LE(8) + 10) % 64, 0);
  assert.deepEqual(list(parseNpy(bytes).values), [1, 2, 3]);
});

const parsesOrFormatError = (bytes: Uint8Array) => {
  try {
    parseNpy(bytes);
  } catch (e) {
    if (!(e instanceof EdgeguardError) || e.code !== 'EG_FORMAT') throw e;
  }
};

test('property: arbitrary bytes are parsed or refused with EG_FORMAT, never another error', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), parsesOrFormatError), { numRuns: 2000 });
});

test('property: a valid file with any byte changed, cut or extended is parsed or refused with EG_FORMAT', () => {
  const good = fixture('f32-2x3.npy');
  fc.assert(
    fc.property(
      fc.nat(good.length - 1),
      fc.integer({ min: 0, max: 255 }),
      fc.integer({ min: -20, max: 20 }),
      (at, value, resize) => {
        const b = Buffer.from(good);
        b[at] = value;
        const end = Math.max(0, b.length + resize);
        parsesOrFormatError(resize > 0 ? Buffer.concat([b, Buffer.alloc(resize)]) : b.subarray(0, end));
      },
    ),
    { numRuns: 3000 },
  );
});

test('property: any float32 array round-trips through encodeNpy and parseNpy', () => {
  fc.assert(
    fc.property(fc.array(fc.float({ noNaN: true }), { maxLength: 64 }), (values) => {
      const data = Float32Array.from(values);
      const parsed = parseNpy(encodeNpy('float32', [data.length], data));
      assert.deepEqual(parsed.dims, [data.length]);
      assert.deepEqual(list(parsed.values), Array.from(data));
    }),
  );
});
