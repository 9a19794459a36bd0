import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import { isEdgeguardError } from '../../src/errors/index.ts';
import {
  formatSignerKey,
  formatVerifierKey,
  noteSigner,
  noteVerifier,
  openNote,
  parseNote,
  parseSignerKey,
  parseVerifierKey,
  signNote,
} from '../../src/audit/note.ts';
import { formatCheckpoint, openCheckpoint, parseCheckpoint, signCheckpoint } from '../../src/audit/checkpoint.ts';

// The example of golang.org/x/mod/sumdb/note (note.go documentation and note_test.go).
const GO_VKEY = 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW';
const GO_SKEY = 'PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz';
const GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const GO_NOTE =
  GO_TEXT +
  '\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n';

function freshSigner(name: string) {
  return noteSigner(name, generateKeyPairSync('ed25519').privateKey);
}

function throwsCode(fn: () => unknown, code: string) {
  assert.throws(fn, (e: unknown) => isEdgeguardError(e) && e.code === code);
}

test('the Go sumdb/note example verifies, and signing reproduces it byte for byte', () => {
  const v = parseVerifierKey(GO_VKEY);
  assert.equal(v.name, 'PeterNeumann');
  assert.equal(v.keyId.toString('hex'), 'c74f20a3');
  const opened = openNote(GO_NOTE, [v]);
  assert.equal(opened.text, GO_TEXT);
  assert.equal(opened.verified.length, 1);
  const s = parseSignerKey(GO_SKEY);
  assert.equal(formatVerifierKey(s), GO_VKEY);
  assert.equal(formatSignerKey(s), GO_SKEY);
  assert.equal(signNote(GO_TEXT, [s]), GO_NOTE);
  throwsCode(() => openNote(GO_NOTE.replace('cryptography', 'cryptographY'), [v]), 'EG_SIGNATURE_INVALID');
});

test('key id is SHA-256(name || 0x0A || 0x01 || pubkey)[0:4] and verifier keys round-trip', () => {
  const s = freshSigner('log.example/edgeguard');
  const text = formatVerifierKey(s);
  const v = parseVerifierKey(text);
  assert.equal(v.keyId.toString('hex'), s.keyId.toString('hex'));
  assert.equal(formatVerifierKey(v), text);
  // A verifier key whose id does not match its key is refused.
  const [name, , key] = [text.slice(0, text.indexOf('+')), '', text.slice(text.indexOf('+') + 10)];
  throwsCode(() => parseVerifierKey(`${name}+00000000+${key}`), 'EG_KEY_FORMAT');
});

test('malformed verifier keys are refused with EG_KEY_FORMAT or EG_UNSUPPORTED', () => {
  for (const bad of [
    '',
    'name',
    'name+c74f20a3',
    'na me+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW',
    'PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW',
    'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T',
    'PeterNeumann+c74f20a3+ARpc',
    '+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW',
  ]) {
    assert.throws(
      () => parseVerifierKey(bad),
      (e: unknown) => isEdgeguardError(e, 'EG_KEY_FORMAT'),
      JSON.stringify(bad),
    );
  }
  throwsCode(
    () => parseVerifierKey('PeterNeumann+c74f20a3+AhpgdqeUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW'),
    'EG_UNSUPPORTED',
  );
});

test('verifiers ignore unknown keys, accept many signature lines, and reject when none verifies', () => {
  const log = freshSigner('log.example');
  const others = Array.from({ length: 19 }, (_, i) => freshSigner(`witness${i}.example`));
  const text = 'log.example\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n';
  // 19 unknown cosigners first, the log's own signature last: 20 lines.
  const note = signNote(text, [...others, log]);
  assert.equal(parseNote(note).signatures.length, 20);
  const opened = openNote(note, [noteVerifier(log.name, log.publicKey)]);
  assert.equal(opened.verified.length, 1);
  assert.equal(opened.unverified.length, 19);
  // No known key among the signers.
  throwsCode(() => openNote(signNote(text, others), [noteVerifier(log.name, log.publicKey)]), 'EG_SIGNATURE_MISMATCH');
  // A known name with another key id is unknown, not a failure: still no trusted signature.
  const impostor = freshSigner('log.example');
  throwsCode(
    () => openNote(signNote(text, [impostor]), [noteVerifier(log.name, log.publicKey)]),
    'EG_SIGNATURE_MISMATCH',
  );
  // More than 100 lines are refused.
  const many = Array.from({ length: 101 }, () => ({ name: 'x', keyId: Buffer.alloc(4), signature: Buffer.alloc(64) }));
  const tooMany = `${text}\n${many.map((s) => `\u2014 ${s.name} ${Buffer.concat([s.keyId, s.signature]).toString('base64')}\n`).join('')}`;
  throwsCode(() => parseNote(tooMany), 'EG_FORMAT');
});

test('a forged signature by the known key rejects the note even when another signature is good', () => {
  const log = freshSigner('log.example');
  const text = 'hello\n';
  const good = signNote(text, [log]);
  const sigLine = good.slice(good.indexOf('\u2014'));
  const raw = Buffer.from(sigLine.trim().split(' ')[2] as string, 'base64');
  flip(raw, 10, 1);
  const forged = `${text}\n\u2014 log.example ${raw.toString('base64')}\n`;
  throwsCode(() => openNote(forged, [noteVerifier(log.name, log.publicKey)]), 'EG_SIGNATURE_INVALID');
});

test('malformed notes are refused with EG_FORMAT', () => {
  const v = parseVerifierKey(GO_VKEY);
  const sig =
    '\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=';
  const cases = [
    '',
    GO_TEXT,
    GO_TEXT + '\n',
    GO_TEXT + '\n' + sig,
    GO_TEXT +
      '\n- PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n',
    GO_TEXT + '\n\u2014 PeterNeumannx08go/ZJkuBS9UG\n',
    GO_TEXT +
      '\n\u2014 Peter+Neumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n',
    GO_TEXT + '\n\u2014 PeterNeumann x08g\n',
    GO_TEXT + '\n\u2014 PeterNeumann AAAA\n',
    GO_TEXT +
      '\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM\n',
    GO_TEXT + '\n' + sig + '\n\n',
    'tab\there\n\n' + sig + '\n',
    'cr\r\n\n' + sig + '\n',
  ];
  for (const c of cases) {
    assert.throws(
      () => openNote(c, [v]),
      (e: unknown) => isEdgeguardError(e, 'EG_FORMAT'),
      JSON.stringify(c),
    );
  }
  assert.throws(
    () => openNote(Buffer.from([0xff, 0x0a, 0x0a]), [v]),
    (e: unknown) => isEdgeguardError(e, 'EG_FORMAT'),
  );
});

test('property: arbitrary bytes never open and only ever fail with a typed error', () => {
  const v = parseVerifierKey(GO_VKEY);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
      assert.throws(
        () => openNote(bytes, [v]),
        (e: unknown) => isEdgeguardError(e),
      );
    }),
    { numRuns: 500 },
  );
});

test('property: any single-byte change to a signed checkpoint is rejected', () => {
  const log = freshSigner('edgeguard.example/audit');
  const v = noteVerifier(log.name, log.publicKey);
  fc.assert(
    fc.property(
      fc.nat({ max: 2 ** 40 }),
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.nat(),
      fc.integer({ min: 1, max: 255 }),
      (size, root, pos, delta) => {
        const note = Buffer.from(
          signCheckpoint({ origin: log.name, size, rootHash: Buffer.from(root), extensions: [] }, log),
          'utf8',
        );
        assert.equal(openCheckpoint(note, v).checkpoint.size, size);
        const i = pos % note.length;
        const bad = Buffer.from(note);
        bad[i] = ((bad[i] as number) + delta) % 256;
        assert.throws(
          () => openCheckpoint(bad, v),
          (e: unknown) => isEdgeguardError(e),
        );
      },
    ),
    { numRuns: 400 },
  );
});

test('checkpoint bodies format and parse strictly', () => {
  const root = Buffer.alloc(32, 0xab);
  const cp = { origin: 'edgeguard.example/audit', size: 1234, rootHash: root, extensions: ['ext one'] };
  const text = formatCheckpoint(cp);
  assert.equal(text, `edgeguard.example/audit\n1234\n${root.toString('base64')}\next one\n`);
  assert.deepEqual(parseCheckpoint(text), cp);
  const r = root.toString('base64');
  const bad = [
    'o\n1\n',
    `o\n01\n${r}\n`,
    `o\n-1\n${r}\n`,
    `o\n1.0\n${r}\n`,
    `o\n9007199254740993\n${r}\n`,
    `\n1\n${r}\n`,
    `o\n1\n${Buffer.alloc(31).toString('base64')}\n`,
    `o\n1\n${r.slice(0, -1)}\n`,
    `o\n1\n${r}`,
    `o\n1\n${r}\n\n`,
    `o\n1\n${r}\n\nx\n`,
  ];
  for (const b of bad)
    assert.throws(
      () => parseCheckpoint(b),
      (e: unknown) => isEdgeguardError(e, 'EG_FORMAT'),
      JSON.stringify(b),
    );
});

test('a checkpoint for another origin is refused even under the right key', () => {
  const log = freshSigner('edgeguard.example/audit');
  const note = signNote(
    formatCheckpoint({ origin: 'other.example/log', size: 1, rootHash: Buffer.alloc(32), extensions: [] }),
    [log],
  );
  throwsCode(() => openCheckpoint(note, noteVerifier(log.name, log.publicKey)), 'EG_SIGNATURE_MISMATCH');
});

test('property: checkpoints round-trip through format and parse', () => {
  fc.assert(
    fc.property(
      fc.stringMatching(/^[a-z0-9./-]{1,40}$/),
      fc.nat({ max: Number.MAX_SAFE_INTEGER }),
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.array(fc.stringMatching(/^[ -~]{1,30}$/), { maxLength: 3 }),
      (origin, size, root, extensions) => {
        const cp = { origin, size, rootHash: Buffer.from(root), extensions };
        assert.deepEqual(parseCheckpoint(formatCheckpoint(cp)), cp);
      },
    ),
  );
});

function flip(buf: Buffer, at: number, mask: number): void {
  buf[at] = (buf[at] ?? 0) ^ mask;
}
