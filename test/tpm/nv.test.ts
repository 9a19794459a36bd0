/**
 * NV public areas and TPM2_NV_ReadPublic responses (src/tpm/nv.ts), against a response recorded
 * from swtpm (tpm2_send) for an index defined as the floor's baselines index (24-byte variant),
 * written and write-locked (the floor's layout: test/release/floor-layout.test.ts).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isEdgeguardError } from '../../src/errors/index.ts';
import {
  TPMA_NV,
  TPM_NT,
  marshalNvPublic,
  nvName,
  nvReadPublicCommand,
  nvType,
  parseNvReadPublicResponse,
  parseTpm2bNvPublic,
} from '../../src/tpm/index.ts';

const POLICY = Buffer.from('02e3642b3e29eeccfffd8031c00a6f0a0febe5ceea2f6ef6b0322fe81598cf31', 'hex');
const NAME = Buffer.from('000b76a0f24c75340d5ae31193e97dcbdd76d71d457a6a44636fe0d70b8b0019ce26', 'hex');
const RECORDED = Buffer.from(
  '80010000005e00000000002e01800103000b220628080020' + POLICY.toString('hex') + '00180022' + NAME.toString('hex'),
  'hex',
);
const HANDLE_ERROR = Buffer.from('80010000000a0000018b', 'hex');

describe('TPM2_NV_ReadPublic', () => {
  test('the command is the 14-byte no-session TPM2_NV_ReadPublic', () => {
    assert.equal(nvReadPublicCommand(0x01800103).toString('hex'), '80010000000e0000016901800103');
  });

  test('a recorded response: the public area, and its Name is the one the TPM sent', () => {
    const pub = parseNvReadPublicResponse(RECORDED, 0x01800103)!;
    assert.equal(pub.nvIndex, 0x01800103);
    assert.equal(pub.nameAlg, 0x000b);
    assert.equal(pub.attributes, 0x22062808);
    assert.equal(nvType(pub.attributes), TPM_NT.ordinary);
    assert.equal(pub.attributes & TPMA_NV.writelocked, TPMA_NV.writelocked);
    assert.deepEqual(pub.authPolicy, POLICY);
    assert.equal(pub.dataSize, 24);
    assert.deepEqual(nvName(pub), NAME);
    // The same fields marshaled from scratch give the same Name.
    const ours = marshalNvPublic({
      nvIndex: 0x01800103,
      nameAlg: 0x000b,
      attributes: 0x22062808,
      authPolicy: POLICY,
      dataSize: 24,
    });
    assert.deepEqual(nvName({ nameAlg: 0x000b, bytes: ours }), NAME);
  });

  test('TPM_RC_HANDLE means no index; another response code is a typed TPM error', () => {
    assert.equal(parseNvReadPublicResponse(HANDLE_ERROR, 0x01800103), undefined);
    const nvAuth = Buffer.from('80010000000a00000149', 'hex');
    assert.throws(
      () => parseNvReadPublicResponse(nvAuth, 0x01800103),
      (e) => isEdgeguardError(e, 'EG_TPM'),
    );
  });

  test('bad input: truncated, trailing bytes, wrong size, another index, a Name that does not hash the area', () => {
    const structure = (b: Buffer, index = 0x01800103) =>
      assert.throws(
        () => parseNvReadPublicResponse(b, index),
        (e) => isEdgeguardError(e, 'EG_TPM_STRUCTURE'),
      );
    structure(RECORDED.subarray(0, RECORDED.length - 1));
    structure(Buffer.concat([RECORDED, Buffer.from([0])]));
    structure(Buffer.alloc(0));
    const wrongName = Buffer.from(RECORDED);
    wrongName[wrongName.length - 1]! ^= 1;
    structure(wrongName);
    const wrongAttr = Buffer.from(RECORDED);
    wrongAttr[20]! ^= 0x08; // writelocked cleared, Name unchanged
    structure(wrongAttr);
    structure(RECORDED, 0x01800104);
    const longPolicy = Buffer.from(RECORDED);
    longPolicy.writeUInt16BE(0x0041, 22); // authPolicy size 65 > 64
    structure(longPolicy);
  });

  test('parseTpm2bNvPublic: the sized public area alone, refusing a non-NV handle and trailing bytes', () => {
    const area = RECORDED.subarray(10, 10 + 2 + 0x2e);
    assert.equal(parseTpm2bNvPublic(area).dataSize, 24);
    assert.throws(
      () => parseTpm2bNvPublic(Buffer.concat([area, Buffer.from([1])])),
      (e) => isEdgeguardError(e, 'EG_TPM_STRUCTURE'),
    );
    const persistent = Buffer.from(area);
    persistent[2] = 0x81;
    assert.throws(
      () => parseTpm2bNvPublic(persistent),
      (e) => isEdgeguardError(e, 'EG_TPM_STRUCTURE'),
    );
  });

  test('property: random bytes give a public area or a typed error, never an untyped throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        try {
          parseTpm2bNvPublic(bytes);
        } catch (e) {
          assert.ok(isEdgeguardError(e, 'EG_TPM_STRUCTURE'), String(e));
        }
        try {
          parseNvReadPublicResponse(bytes, 0x01800103);
        } catch (e) {
          assert.ok(isEdgeguardError(e), String(e));
        }
      }),
      { numRuns: 1000 },
    );
  });

  test('property: mutated recordings give a public area, undefined or a typed error', () => {
    fc.assert(
      fc.property(
        fc.nat({ max: RECORDED.length - 1 }),
        fc.integer({ min: 1, max: 255 }),
        fc.nat({ max: RECORDED.length }),
        (i, x, cut) => {
          const mutated = Buffer.from(RECORDED);
          mutated[i]! ^= x;
          for (const b of [mutated, RECORDED.subarray(0, cut)]) {
            try {
              parseNvReadPublicResponse(b, 0x01800103);
            } catch (e) {
              assert.ok(isEdgeguardError(e), String(e));
            }
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});
