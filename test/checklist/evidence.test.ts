/**
 * The checklist's probes of outside bytes (what a file's first bytes say it is, how random they
 * are), the XML escaping of the JUnit form, and the score: recorded files, hand-made edge cases
 * and fast-check properties over arbitrary bytes and text.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { byteEntropy, inputKindOf, looksLikeOnnx } from '../../src/checklist/evidence.ts';
import { escapeXml } from '../../src/checklist/format-junit.ts';
import { checklistScore, type CheckResult, type CheckStatus } from '../../src/checklist/index.ts';
import { FIXTURES } from '../helpers/workspace.ts';

test('the demo ONNX models are recognised by their protobuf bytes', async () => {
  for (const file of ['mnist-cnn.onnx', 'mnist-mlp.onnx'])
    assert.ok(looksLikeOnnx(await readFile(join(FIXTURES, 'models', file))), file);
});

test('short, empty and non-ONNX heads are not models', () => {
  for (const head of [[], [0x08], [0x08, 0x07], [0x08, 0x00, 0x12], [0x08, 0x80, 0x12], [0x0a, 0x07, 0x12]])
    assert.equal(looksLikeOnnx(Buffer.from(head)), false, JSON.stringify(head));
});

test('input kinds: PNG, JPEG, NumPy by magic; truncated magic is nothing', async () => {
  assert.equal(inputKindOf(await readFile(join(FIXTURES, 'guard', 'fgsm-4-as-8.png'))), 'PNG image');
  assert.equal(inputKindOf(Buffer.from([0xff, 0xd8, 0xff, 0xe0])), 'JPEG image');
  assert.equal(inputKindOf(Buffer.from('\x93NUMPY\x01\x00', 'latin1')), 'NumPy array');
  assert.equal(inputKindOf(Buffer.from([0x89, 0x50, 0x4e, 0x47])), undefined);
  assert.equal(inputKindOf(Buffer.from([0xff, 0xd8])), undefined);
  assert.equal(inputKindOf(Buffer.alloc(0)), undefined);
});

test('probes never throw on arbitrary bytes, and an input kind always has its magic', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      looksLikeOnnx(bytes);
      const kind = inputKindOf(bytes);
      if (kind === 'PNG image') assert.equal(bytes[0], 0x89);
      if (kind === 'JPEG image') assert.equal(bytes[0], 0xff);
      if (kind === 'NumPy array') assert.equal(bytes[0], 0x93);
      const bits = byteEntropy(bytes);
      assert.ok(bits >= 0 && bits <= 8);
    }),
  );
});

test('entropy: constant bytes 0, all byte values once 8', () => {
  assert.equal(byteEntropy(Buffer.alloc(1000, 7)), 0);
  assert.equal(byteEntropy(Buffer.from(Array.from({ length: 256 }, (_, i) => i))), 8);
});

test('escaped XML text never carries markup or characters XML cannot hold', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary' }), (text) => {
      const escaped = escapeXml(text);
      assert.doesNotMatch(escaped, /[<>"']/);
      assert.doesNotMatch(escaped, /&(?!(amp|lt|gt|quot|apos);)/);
      for (const c of escaped) {
        const code = c.codePointAt(0)!;
        assert.ok(code === 9 || code === 10 || code === 13 || code >= 0x20, `U+${code.toString(16)}`);
      }
    }),
  );
});

function results(statuses: CheckStatus[]): CheckResult[] {
  return statuses.map((status, i) => ({
    id: `EG-${i}`,
    title: '',
    audit: '',
    status,
    actual: '',
    expected: '',
    evidence: [],
    remediation: '',
  }));
}

test('score: a missing capability counts as no protection; not-applicable items do not count', () => {
  assert.equal(checklistScore(results(['PASS', 'PASS'])), 100);
  assert.equal(checklistScore(results(['PASS', 'NOT-AVAILABLE'])), 50);
  assert.equal(checklistScore(results(['PASS', 'NOT-APPLICABLE'])), 100);
  assert.equal(checklistScore(results(['PASS', 'WARN', 'FAIL', 'FAIL'])), 38);
  assert.equal(checklistScore(results(['NOT-APPLICABLE'])), 100);
});
