import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, hkdfSync, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { ChunkCipher, type CipherSuite } from '../../src/crypto/index.ts';
import { EdgeguardError } from '../../src/errors/index.ts';

for (const suite of ['aes-256-gcm', 'chacha20-poly1305'] as CipherSuite[]) {
  test(`${suite}: chunk layout follows docs/formats.md (HKDF subkey, prefix || u32 counter || last flag)`, () => {
    const ikm = randomBytes(32);
    const salt = randomBytes(32);
    const headerDigest = randomBytes(32);
    const info = Buffer.concat([
      Buffer.from('edgeguard/egm/v1 stream\0'),
      Buffer.from([suite === 'aes-256-gcm' ? 1 : 2]),
      headerDigest,
    ]);
    const okm = Buffer.from(hkdfSync('sha256', ikm, salt, info, 39));
    const nonce = Buffer.concat([okm.subarray(32), Buffer.from([0, 0, 0, 5, 1])]);
    const c = createCipheriv(suite as 'aes-256-gcm', okm.subarray(0, 32), nonce, { authTagLength: 16 });
    c.setAAD(headerDigest);
    const pt = randomBytes(100);
    const expected = Buffer.concat([c.update(pt), c.final(), c.getAuthTag()]);
    const cipher = new ChunkCipher(suite, ikm, salt, headerDigest);
    assert.ok(cipher.seal(5, true, pt).equals(expected));
    assert.ok(cipher.open(5, true, expected).equals(pt));
  });

  test(`${suite}: a chunk opens only at its own index, with its own last flag, under its own header`, () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 200 }),
        fc.integer({ min: 0, max: 1000 }),
        fc.boolean(),
        (pt, index, last) => {
          const ikm = randomBytes(32);
          const salt = randomBytes(32);
          const hd = randomBytes(32);
          const sealed = new ChunkCipher(suite, ikm, salt, hd).seal(index, last, pt);
          const fails = (f: () => unknown) => assert.throws(f, (e: EdgeguardError) => e.code === 'EG_TAMPERED');
          fails(() => new ChunkCipher(suite, ikm, salt, hd).open(index + 1, last, sealed));
          fails(() => new ChunkCipher(suite, ikm, salt, hd).open(index, !last, sealed));
          fails(() => new ChunkCipher(suite, ikm, randomBytes(32), hd).open(index, last, sealed));
          fails(() => new ChunkCipher(suite, ikm, salt, randomBytes(32)).open(index, last, sealed));
          fails(() => new ChunkCipher(suite, ikm, salt, hd).open(index, last, sealed.subarray(0, sealed.length - 1)));
          assert.ok(new ChunkCipher(suite, ikm, salt, hd).open(index, last, sealed).equals(Buffer.from(pt)));
        },
      ),
      { numRuns: 100 },
    );
  });
}
