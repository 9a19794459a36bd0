/**
 * The structure check of image bodies as they arrive (src/runtime/image-structure.ts): real PNG and
 * JPEG files (the digit fixtures, and larger ones written by sharp/libvips) pass however their
 * bytes are split; a body that has the signature and garbage after it is refused within its first
 * chunk or segment; so are a bad IHDR, a wrong CRC, a chunk longer than the body, too many pixels,
 * and a body that ends before its image does.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import sharp from 'sharp';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { MAX_INPUT_PIXELS } from '../../src/inference/index.ts';
import { checkImageStructure, imageStructureCheck, type ImageFormat } from '../../src/runtime/index.ts';
import { FIXTURES } from '../helpers/workspace.ts';

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** The body fed in pieces of `size` bytes: the error and the byte count fed when it came, or undefined. */
function streamed(format: ImageFormat, bytes: Buffer, size: number, bodyBytes = bytes.length) {
  const check = imageStructureCheck(format, { bodyBytes, maxPixels: MAX_INPUT_PIXELS });
  for (let i = 0; i < bytes.length; i += size) {
    const error = check.push(bytes.subarray(i, i + size));
    if (error) return { error, fed: Math.min(bytes.length, i + size) };
  }
  const error = check.end();
  return error ? { error, fed: bytes.length } : undefined;
}

function assertRefused(r: ReturnType<typeof streamed>, message: RegExp): void {
  assert.ok(r, 'refused');
  assert.ok(isEdgeguardError(r.error, 'EG_INPUT'), String(r.error));
  assert.match(r.error.message, message);
}

/** A noisy RGB image of w x h (so that it compresses badly and is large), as sharp writes it. */
function noisy(w: number, h: number) {
  return sharp(randomBytes(w * h * 3), { raw: { width: w, height: h, channels: 3 } });
}

/** The PNG with the chunk at `offset` (its length field) given `patch` at `at` bytes into it. */
function patched(png: Buffer, offset: number, at: number, patch: number[]): Buffer {
  const copy = Buffer.from(png);
  Buffer.from(patch).copy(copy, offset + at);
  return copy;
}

describe('image structure as it arrives', () => {
  test('real PNG and JPEG files pass, however their bytes are split', async () => {
    const digits = await Promise.all(
      ['0-0.png', '7-0.png', '9-1.png'].map((f) => readFile(join(FIXTURES, 'digits', f))),
    );
    const big = await noisy(600, 400).png().toBuffer();
    const interlaced = await noisy(64, 64).png({ progressive: true, palette: true }).toBuffer();
    const grey16 = await sharp(randomBytes(32 * 32 * 2), { raw: { width: 32, height: 32, channels: 1 } })
      .png()
      .toBuffer();
    for (const png of [...digits, big, interlaced, grey16]) {
      for (const size of [1, 7, 13, 4096, png.length]) assert.equal(streamed('image/png', png, size), undefined);
      assert.equal(checkImageStructure('image/png', png, MAX_INPUT_PIXELS), undefined);
      // Bytes after IEND are not looked at, as the decoder does not.
      assert.equal(streamed('image/png', Buffer.concat([png, randomBytes(100)]), 4096), undefined);
    }
    const jpegs = [
      await noisy(600, 400).jpeg().toBuffer(),
      await noisy(300, 200).jpeg({ progressive: true }).toBuffer(),
      await noisy(64, 48).jpeg({ quality: 100, chromaSubsampling: '4:4:4' }).withMetadata().toBuffer(),
    ];
    for (const jpeg of jpegs)
      for (const size of [1, 2, 5, 4096, jpeg.length]) assert.equal(streamed('image/jpeg', jpeg, size), undefined);
  });

  test('a PNG signature followed by garbage is refused within its first chunk', () => {
    for (let i = 0; i < 200; i++) {
      const body = Buffer.concat([PNG_SIGNATURE, randomBytes(1024 * 1024 - 8)]);
      const r = streamed('image/png', body, 65536);
      assertRefused(r, /not a valid PNG image/);
      // The first chunk read is where it stops.
      assert.equal(r!.fed, 65536);
      assert.ok(streamed('image/png', body, 1)!.fed <= 16, 'refused by the first chunk header');
    }
    // Without its signature it is not a PNG at all.
    assertRefused(streamed('image/png', randomBytes(1024), 1024), /not a PNG image \(its first bytes/);
    assertRefused(streamed('image/png', PNG_SIGNATURE.subarray(0, 5), 5), /not a PNG image/);
  });

  test('bad IHDR, a wrong CRC, a chunk longer than the body, too many pixels, a body that ends early', async () => {
    const png = await readFile(join(FIXTURES, 'digits', '7-0.png'));
    // IHDR starts at 8: length 4, type 4, width 4, height 4, depth, colour, compression, filter, interlace, CRC 4.
    assertRefused(
      streamed('image/png', patched(png, 8, 4, [0x49, 0x44, 0x41, 0x54]), 64),
      /first chunk is not an IHDR/,
    );
    assertRefused(streamed('image/png', patched(png, 8, 0, [0, 0, 0, 14]), 64), /first chunk is not an IHDR/);
    assertRefused(streamed('image/png', patched(png, 8, 21, [0, 0, 0, 0]), 64), /CRC of its IHDR chunk is wrong/);
    // A colour type with a bit depth it cannot have, and dimensions beyond the pixel limit (with
    // their CRCs right: the check reads the fields, not only the checksum).
    const ihdr = (fields: number[]) => {
      const data = Buffer.from([0x49, 0x48, 0x44, 0x52, ...fields]);
      const copy = Buffer.from(png);
      data.copy(copy, 12);
      copy.writeUInt32BE(crc32(data), 29);
      return copy;
    };
    assertRefused(
      streamed('image/png', ihdr([0, 0, 0, 28, 0, 0, 0, 28, 16, 3, 0, 0, 0]), 64),
      /colour type 3 with bit depth 16/,
    );
    assertRefused(
      streamed('image/png', ihdr([0, 1, 0, 0, 0, 1, 0, 0, 8, 0, 0, 0, 0]), 64),
      /65536 x 65536 pixels, more than the 40000000 accepted/,
    );
    assertRefused(streamed('image/png', ihdr([0, 0, 0, 0, 0, 0, 0, 28, 8, 0, 0, 0, 0]), 64), /0 x 28 pixels/);
    // The second chunk says it is longer than what is left of the announced body.
    assertRefused(streamed('image/png', patched(png, 33, 0, [0, 0x10, 0, 0]), 64), /does not fit in the/);
    // A chunk's data changed, its CRC not.
    const tampered = Buffer.from(png);
    tampered[42] = tampered[42]! ^ 0xff;
    assert.equal(png.toString('latin1', 37, 41), 'pHYs', 'the fixture has a checked chunk second');
    assertRefused(streamed('image/png', tampered, 64), /CRC of its pHYs chunk is wrong/);
    // Cut short: the body ends before IEND.
    assertRefused(streamed('image/png', png.subarray(0, png.length - 12), 64), /ends before the image does/);
    // A body announced shorter than the image is.
    assertRefused(streamed('image/png', png, 64, png.length - 1), /does not fit in the/);
  });

  test('JPEG: garbage after SOI, unknown markers, too many pixels, a scan before the frame, cut short', async () => {
    for (let i = 0; i < 200; i++) {
      const body = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff]), randomBytes(1024 * 1024 - 3)]);
      const r = streamed('image/jpeg', body, 65536);
      assertRefused(r, /not a valid JPEG image/);
      assert.equal(r!.fed, 65536, 'refused within the first chunk read');
    }
    assertRefused(streamed('image/jpeg', Buffer.from([0xff, 0xd8, 0xff, 0x02, 0, 4, 0, 0]), 8), /not a JPEG marker/);
    assertRefused(streamed('image/jpeg', Buffer.from([0xff, 0xd8, 0xff, 0xda, 0, 2]), 8), /scan \(SOS\) comes before/);
    // SOF0 of 65535 x 65535.
    const sof = [0xff, 0xd8, 0xff, 0xc0, 0, 11, 8, 0xff, 0xff, 0xff, 0xff, 1, 1, 0x11, 0];
    assertRefused(streamed('image/jpeg', Buffer.from(sof), 4), /65535 x 65535 pixels/);
    const jpeg = await noisy(64, 48).jpeg().toBuffer();
    assertRefused(streamed('image/jpeg', jpeg.subarray(0, jpeg.length - 2), 4096), /no EOI marker/);
    assertRefused(streamed('image/jpeg', Buffer.from([0xff, 0xd8]), 2), /not a JPEG image/);
  });
});

/** CRC-32 as PNG uses it, written out here independently of the module under test. */
function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

test('fast-check: random and mutated PNG and JPEG bodies, split anywhere, end in a pass or EG_INPUT', async () => {
  const png = await readFile(join(FIXTURES, 'digits', '7-0.png'));
  const jpeg = await sharp(png).jpeg().toBuffer();
  const random = (format: ImageFormat) =>
    fc.uint8Array({ maxLength: 2048 }).map((b) => ({ format, bytes: Buffer.from(b) }));
  const mutated = (format: ImageFormat, real: Buffer) =>
    fc
      .tuple(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }), fc.nat())
      .map(([edits, cut]) => {
        const bytes = Buffer.from(real);
        for (const [at, value] of edits) bytes[at % bytes.length] = value;
        return { format, bytes: bytes.subarray(0, bytes.length - (cut % 64)) };
      });
  const body = fc.oneof(
    random('image/png'),
    random('image/jpeg'),
    mutated('image/png', png),
    mutated('image/jpeg', jpeg),
  );
  fc.assert(
    fc.property(body, fc.integer({ min: 1, max: 4096 }), fc.nat({ max: 16 }), ({ format, bytes }, size, extra) => {
      // The announced length is what arrives, or more (a client that stops early).
      const r = streamed(format, bytes, size, bytes.length + extra);
      if (r) assert.ok(isEdgeguardError(r.error, 'EG_INPUT'), String(r.error));
    }),
    { numRuns: 20_000 },
  );
});
