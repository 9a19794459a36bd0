import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { encodeHeader, parseHeader, parseModelMetadata, FIXED_HEADER_BYTES, MAGIC } from '../../src/model/index.ts';
import { generateContentKey } from '../../src/crypto/index.ts';
import { EdgeguardError } from '../../src/errors/index.ts';

function sample() {
  return encodeHeader({
    version: 1,
    suite: 'aes-256-gcm',
    chunkSize: 65536,
    salt: randomBytes(32),
    keyId: generateContentKey().kid,
    plaintextLength: 123456,
    plaintextSha256: randomBytes(32),
    metadata: parseModelMetadata({ name: 'mnist', version: 3, format: 'onnx', label: 'x' }),
  });
}

test('a header round-trips through encode and parse', () => {
  const bytes = sample();
  const r = parseHeader(bytes);
  assert.ok('header' in r);
  assert.equal(r.header.metadata.name, 'mnist');
  assert.equal(r.header.plaintextLength, 123456);
  assert.ok(r.bytes.equals(bytes));
});

test('a short buffer asks for more bytes; wrong magic is EG_FORMAT', () => {
  const bytes = sample();
  assert.deepEqual(parseHeader(bytes.subarray(0, 10)), { needBytes: FIXED_HEADER_BYTES });
  assert.ok('needBytes' in parseHeader(bytes.subarray(0, FIXED_HEADER_BYTES + 3)));
  assert.throws(
    () => parseHeader(Buffer.from('PK\x03\x04 not a package at all, a zip file perhaps..........')),
    (e: EdgeguardError) => e.code === 'EG_FORMAT',
  );
});

test('bad field values are refused with typed errors', () => {
  const cases: Array<[string, (b: Buffer) => void, string]> = [
    ['version 2', (b) => b.writeUInt16BE(2, 8), 'EG_UNSUPPORTED'],
    ['suite 9', (b) => (b[10] = 9), 'EG_UNSUPPORTED'],
    ['flags', (b) => (b[11] = 1), 'EG_FORMAT'],
    ['chunk size 0', (b) => b.writeUInt32BE(0, 12), 'EG_FORMAT'],
    ['chunk size huge', (b) => b.writeUInt32BE(0xffffffff, 12), 'EG_FORMAT'],
    ['length beyond 2^53', (b) => b.writeBigUInt64BE(2n ** 60n, 80), 'EG_FORMAT'],
    // Beyond the nonce's 32-bit chunk counter (found by the tamper property test: 2^40 bytes in 256-byte chunks).
    ['more than 2^32 chunks', (b) => (b.writeUInt32BE(4096, 12), b.writeBigUInt64BE(2n ** 44n + 1n, 80)), 'EG_FORMAT'],
    ['metadata length huge', (b) => b.writeUInt32BE(0x7fffffff, 120), 'EG_FORMAT'],
    ['metadata not JSON', (b) => b.write('{{{{', FIXED_HEADER_BYTES), 'EG_FORMAT'],
  ];
  for (const [name, edit, code] of cases) {
    const b = sample();
    edit(b);
    assert.throws(
      () => parseHeader(b),
      (e: EdgeguardError) => e.code === code,
      name,
    );
  }
  const b = sample();
  const meta = Buffer.from(JSON.stringify({ name: '../../etc', version: -1, format: 'onnx' }));
  const bad = Buffer.concat([b.subarray(0, FIXED_HEADER_BYTES), meta]);
  bad.writeUInt32BE(meta.length, 120);
  assert.throws(
    () => parseHeader(bad),
    (e: EdgeguardError) => e.code === 'EG_FORMAT',
  );
});

test('property: arbitrary bytes never crash the parser, only typed errors or a need for more bytes', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), fc.boolean(), (bytes, withMagic) => {
      const buf = Buffer.from(bytes);
      if (withMagic && buf.length >= 8) MAGIC.copy(buf, 0);
      if (withMagic && buf.length >= 10) buf.writeUInt16BE(1, 8);
      try {
        const r = parseHeader(buf);
        assert.ok('needBytes' in r || 'header' in r);
      } catch (e) {
        assert.ok(e instanceof EdgeguardError, `untyped error: ${String(e)}`);
      }
    }),
    { numRuns: 2000 },
  );
});

test('property: any mutation of a valid header parses, or fails with a typed error', () => {
  const base = sample();
  fc.assert(
    fc.property(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 }), (at, v) => {
      const b = Buffer.from(base);
      b[at] = v;
      try {
        parseHeader(b);
      } catch (e) {
        assert.ok(e instanceof EdgeguardError);
      }
    }),
    { numRuns: 2000 },
  );
});
