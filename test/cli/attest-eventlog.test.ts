/** `edgeguard attest eventlog` through the real CLI: JSON that matches the parser, typed failures. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
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
