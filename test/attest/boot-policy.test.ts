/** Boot policies: made from a real log, validated strictly, and checked against other logs (what-if). */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  checkLogAgainstPolicy,
  createBootPolicy,
  formatBootPolicyYaml,
  parseBootPolicyYaml,
  validateBootPolicy,
} from '../../src/attest/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { parseEventLog } from '../../src/eventlog/index.ts';

const log = (name: string) =>
  parseEventLog(readFileSync(join(import.meta.dirname, '..', 'eventlog', 'fixtures', name)));
const coreos = log('coreos_36_shielded_vm_no_secure_boot_eventlog');
const ubuntu = log('ubuntu_2104_shielded_vm_no_secure_boot_eventlog');

describe('boot policy', () => {
  test('made from a log: the log passes it, and it survives YAML', () => {
    const policy = createBootPolicy(coreos);
    assert.equal(policy.pcrs, 'sha256:0,1,2,3,4,5,6,7,8,9,14');
    assert.equal(policy.secureBoot?.required, false);
    assert.equal(policy.secureBoot?.dbxMustContain?.length, 186);
    assert.equal(policy.bootComponents?.shim?.length, 1);
    assert.deepEqual(checkLogAgainstPolicy(coreos, policy), []);
    assert.deepEqual(parseBootPolicyYaml(formatBootPolicyYaml(policy)), policy);
    const exact = createBootPolicy(coreos, { exactPcrs: true });
    assert.deepEqual(checkLogAgainstPolicy(coreos, exact), []);
  });

  test('another OS on the same platform fails on its shim, bootloader, kernel, command line and PCRs', () => {
    const codes = new Set(
      checkLogAgainstPolicy(ubuntu, createBootPolicy(coreos, { exactPcrs: true })).map((r) => r.code),
    );
    for (const code of [
      'SHIM_NOT_ALLOWED',
      'BOOTLOADER_NOT_ALLOWED',
      'KERNEL_NOT_ALLOWED',
      'CMDLINE_NOT_ALLOWED',
      'PCR_VALUE_MISMATCH',
    ])
      assert.ok(codes.has(code as never), code);
    assert.ok(!codes.has('DBX_MISSING_ENTRY' as never), 'same platform, same dbx');
  });

  test('invalid policies are refused with EG_ATTEST_POLICY and say where', () => {
    const refused = (value: unknown, pattern: RegExp) =>
      assert.throws(
        () => validateBootPolicy(value),
        (e) => isEdgeguardError(e, 'EG_ATTEST_POLICY') && pattern.test(e.message),
      );
    refused({ version: 2, pcrs: 'sha256:7' }, /version/);
    refused({ version: 1, pcrs: 'sha256:7', extra: true }, /unrecognized|extra/i);
    refused({ version: 1, pcrs: 'sha256:0', secureBoot: { required: true } }, /cover PCR 7/);
    refused({ version: 1, pcrs: 'sha256:4,9', bootComponents: { kernel: ['ABC'] } }, /bootComponents\.kernel\.0/);
    refused({ version: 1, pcrs: 'md5:7' }, /pcrs/);
    assert.throws(
      () => parseBootPolicyYaml('version: [1'),
      (e) => isEdgeguardError(e, 'EG_ATTEST_POLICY'),
    );
  });
});
