/**
 * The signed checklist report: a DSSE envelope verified under the device key; another key, a
 * changed payload, another payload type or a payload that is not a report are refused (typed).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { signEnvelope, generateSigningKey } from '../../src/crypto/index.ts';
import { buildReport, signReport, verifySignedReport, type CheckResult } from '../../src/checklist/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';

const results: CheckResult[] = [
  {
    id: 'EG-02',
    title: 'UEFI Secure Boot enforced',
    audit: 'efivarfs',
    status: 'FAIL',
    actual: 'SecureBoot = 0, SetupMode = 0',
    expected: 'SecureBoot = 1',
    evidence: [{ name: 'SecureBoot variable sha256', value: 'ab'.repeat(32) }],
    remediation: 'enable it',
  },
];
const report = buildReport(results, { bindingKey: 'x'.repeat(43) }, new Date('2026-12-01T00:00:00Z'));

test('a signed report verifies under the device key and carries the report unchanged', () => {
  const key = generateSigningKey('ecdsa-p256');
  const envelope = signReport(report, key);
  assert.equal(envelope.payloadType, 'application/vnd.edgeguard.checklist+json');
  assert.deepEqual(verifySignedReport(JSON.stringify(envelope), key.publicKey), report);
});

test('another key, a changed payload, another type or a non-report payload are refused', () => {
  const key = generateSigningKey('ecdsa-p256');
  const envelope = signReport(report, key);
  const refused = (text: string, code: string) =>
    assert.throws(
      () => verifySignedReport(text, key.publicKey),
      (e) => isEdgeguardError(e) && e.code === code,
    );
  refused(JSON.stringify(signReport(report, generateSigningKey('ecdsa-p256'))), 'EG_SIGNATURE_INVALID');
  const changed = { ...report, score: 100 };
  refused(
    JSON.stringify({ ...envelope, payload: Buffer.from(JSON.stringify(changed)).toString('base64') }),
    'EG_SIGNATURE_INVALID',
  );
  refused(JSON.stringify(signEnvelope('application/vnd.in-toto+json', Buffer.from('{}'), key)), 'EG_SIGNATURE_INVALID');
  const notReport = signEnvelope('application/vnd.edgeguard.checklist+json', Buffer.from('{"type":"x"}'), key);
  refused(JSON.stringify(notReport), 'EG_FORMAT');
  const notJson = signEnvelope('application/vnd.edgeguard.checklist+json', Buffer.from('not json'), key);
  refused(JSON.stringify(notJson), 'EG_FORMAT');
  refused('{', 'EG_SIGNATURE_INVALID');
  const ed = generateKeyPairSync('ed25519');
  assert.throws(
    () => verifySignedReport(JSON.stringify(envelope), ed.publicKey),
    (e) => isEdgeguardError(e),
  );
});
