/** `edgeguard attest eventlog` and `attest policy create|check` through the real CLI. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ERROR_EXIT_CODES } from '../../src/errors/index.ts';
import { runCli } from '../helpers/cli.ts';

const FIXTURES = join(import.meta.dirname, '..', 'eventlog', 'fixtures');

test('attest eventlog --json: events, replayed PCRs per bank, Secure Boot state, components', async () => {
  const r = await runCli(['attest', 'eventlog', join(FIXTURES, 'option_rom_eventlog'), '--json']);
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  assert.equal(report.format, 'sha1');
  assert.equal(report.events.length, 61);
  assert.deepEqual(Object.keys(report.pcrs), ['sha1']);
  assert.equal(report.secureBoot.enabled, true);
  assert.equal(report.secureBoot.separator, true);
  assert.deepEqual(report.findings, []);
  assert.equal(report.bootComponents[0].kind, 'bootloader');
});

test('attest eventlog prints a readable summary', async () => {
  const r = await runCli(['attest', 'eventlog', join(FIXTURES, 'coreos_36_shielded_vm_no_secure_boot_eventlog')]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^crypto-agile event log, banks sha1, sha256, sha384, 76 events$/m);
  assert.match(r.stdout, /^Secure Boot: disabled; separator present$/m);
  assert.match(r.stdout, /^ {2}sha256:7 {2}9340551428472c4820d41f51368427f5d1620b3e7d2081cf8859e7e220554bcd$/m);
});

test('a malformed or missing log exits with its code and a sentence', async () => {
  const bad = await runCli(['attest', 'eventlog', join(FIXTURES, 'short_no_action_eventlog')]);
  assert.equal(bad.code, ERROR_EXIT_CODES.EG_EVENTLOG_MALFORMED);
  assert.match(bad.stderr, /^EG_EVENTLOG_MALFORMED: /m);
  const missing = await runCli(['attest', 'eventlog', join(FIXTURES, 'no-such-log')]);
  assert.equal(missing.code, ERROR_EXIT_CODES.EG_NOT_FOUND);
});

test('attest policy create --from-log, then check: the golden log passes, another boot is refused (exit 9)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'eg-attest-cli-'));
  try {
    const policy = join(dir, 'policy.yaml');
    const golden = join(FIXTURES, 'coreos_36_shielded_vm_no_secure_boot_eventlog');
    const created = await runCli(['attest', 'policy', 'create', '--from-log', golden, '-o', policy]);
    assert.equal(created.code, 0, created.stderr);
    const again = await runCli(['attest', 'policy', 'create', '--from-log', golden, '-o', policy]);
    assert.equal(again.code, ERROR_EXIT_CODES.EG_EXISTS);
    const pass = await runCli(['attest', 'policy', 'check', '--log', golden, '--policy', policy, '--json']);
    assert.equal(pass.code, 0, pass.stderr);
    assert.deepEqual(JSON.parse(pass.stdout), { pass: true, reasons: [] });
    const other = join(FIXTURES, 'ubuntu_2104_shielded_vm_no_secure_boot_eventlog');
    const fail = await runCli(['attest', 'policy', 'check', '--log', other, '--policy', policy, '--json']);
    assert.equal(fail.code, ERROR_EXIT_CODES.EG_ATTEST_REFUSED);
    const verdict = JSON.parse(fail.stdout);
    assert.equal(verdict.pass, false);
    assert.ok(verdict.reasons.some((r: { code: string }) => r.code === 'KERNEL_NOT_ALLOWED'));
    const human = await runCli(['attest', 'policy', 'check', '--log', other, '--policy', policy]);
    assert.equal(human.code, ERROR_EXIT_CODES.EG_ATTEST_REFUSED);
    assert.match(human.stderr, /^EG_ATTEST_REFUSED: /m);
    assert.match(human.stdout, /^ {2}KERNEL_NOT_ALLOWED: kernel in PCR 9/m);
    writeFileSync(policy, 'version: 1\npcrs: sha256:0\nsecureBoot: { required: true }\n');
    const invalid = await runCli(['attest', 'policy', 'check', '--log', golden, '--policy', policy]);
    assert.equal(invalid.code, ERROR_EXIT_CODES.EG_ATTEST_POLICY);
    assert.match(invalid.stderr, /must cover PCR 7/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
