/**
 * The TPM floor's baselines index: its contents (magic, u64 BE per kind) and the Name our
 * template gives, checked against a Name swtpm returned for an index defined from that template
 * (24-byte variant: the attributes and policy are the floor's; test/tpm/nv.test.ts).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { marshalNvPublic, nvName } from '../../src/tpm/index.ts';
import {
  FLOOR_BASELINES_ATTRIBUTES,
  FLOOR_BASELINES_SIZE,
  encodeFloorBaselines,
  expectedBaselinesName,
  parseFloorBaselines,
} from '../../src/release/index.ts';

const POLICY = Buffer.from('02e3642b3e29eeccfffd8031c00a6f0a0febe5ceea2f6ef6b0322fe81598cf31', 'hex');
const NAME = Buffer.from('000b76a0f24c75340d5ae31193e97dcbdd76d71d457a6a44636fe0d70b8b0019ce26', 'hex');

test('the Name of our template (written, write-locked) is the one swtpm gave such an index', () => {
  const ours = marshalNvPublic({
    nvIndex: 0x01800103,
    nameAlg: 0x000b,
    attributes: FLOOR_BASELINES_ATTRIBUTES,
    authPolicy: POLICY,
    dataSize: 24,
  });
  assert.deepEqual(nvName({ nameAlg: 0x000b, bytes: ours }), NAME);
  // Another policy or another size: another Name.
  assert.notDeepEqual(expectedBaselinesName(0x01800103, Buffer.alloc(32)), expectedBaselinesName(0x01800103, POLICY));
  assert.notDeepEqual(expectedBaselinesName(0x01800103, POLICY), NAME, 'the real index is 32 bytes, not 24');
});

describe('the floor baselines layout', () => {
  test('magic then u64 big-endian baselines in model, agent, firmware order', () => {
    const b = encodeFloorBaselines({ model: 1n, agent: 2n, firmware: (1n << 64n) - 1n });
    assert.equal(b.length, FLOOR_BASELINES_SIZE);
    assert.equal(
      b.toString('hex'),
      Buffer.from('EGFLOOR1').toString('hex') + '0000000000000001' + '0000000000000002' + 'ffffffffffffffff',
    );
    assert.deepEqual(parseFloorBaselines(b), { model: 1n, agent: 2n, firmware: (1n << 64n) - 1n });
  });

  test('bad input: wrong size or magic is EG_FLOOR_TAMPERED', () => {
    const good = encodeFloorBaselines({ model: 0n, agent: 0n, firmware: 0n });
    for (const bad of [Buffer.alloc(0), good.subarray(1), Buffer.concat([good, Buffer.alloc(1)]), Buffer.alloc(32)])
      assert.throws(
        () => parseFloorBaselines(bad),
        (e) => isEdgeguardError(e, 'EG_FLOOR_TAMPERED'),
      );
  });

  test('property: random bytes give baselines or EG_FLOOR_TAMPERED', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        try {
          parseFloorBaselines(bytes);
        } catch (e) {
          assert.ok(isEdgeguardError(e, 'EG_FLOOR_TAMPERED'), String(e));
        }
      }),
    );
  });
});
