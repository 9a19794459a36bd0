/**
 * Secure Boot state and boot components from real logs, cross-checked with tpm2_eventlog's printed
 * variable data; and the rule that only digests count: a relabelled event is reported, an edited
 * one is not believed, and neither changes the replayed PCRs (which is why types must not decide).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { TPM_ALG } from '../../src/tpm/index.ts';
import {
  EFI_CERT_SHA256,
  EFI_GLOBAL_VARIABLE,
  EFI_IMAGE_SECURITY_DATABASE,
  EV,
  deriveSecureBootState,
  encodeEventLog,
  encodeSignatureList,
  encodeUefiVariableData,
  extractBootComponents,
  measuredEvent,
  parseEventLog,
  parseSignatureDatabase,
  parseUefiVariableData,
  replayEventLog,
  type EventToWrite,
} from '../../src/eventlog/index.ts';
import { runTpm2Eventlog, tpm2EventlogAvailable } from './reference.ts';

const FIXTURES = join(import.meta.dirname, 'fixtures');
const read = (name: string) => readFileSync(join(FIXTURES, name));
const SKIP = tpm2EventlogAvailable() || process.env.CI === 'true' ? false : 'tpm2_eventlog (tpm2-tools) not installed';

/** The log with event `sequence`'s type field overwritten: the attack go-attestation describes. */
function relabel(bytes: Buffer, sequence: number, type: number): Buffer {
  const out = Buffer.from(bytes);
  out.writeUInt32LE(type, parseEventLog(bytes).events[sequence]!.offset + 4);
  return out;
}

describe('Secure Boot state of recorded logs', () => {
  test('SecureBoot on (option ROM PC) and off (the shielded VMs, the PC without a value)', () => {
    assert.equal(deriveSecureBootState(parseEventLog(read('option_rom_eventlog'))).enabled, true);
    for (const name of ['coreos_36_shielded_vm_no_secure_boot_eventlog', 'crypto_agile_eventlog']) {
      const state = deriveSecureBootState(parseEventLog(read(name)));
      assert.equal(state.enabled, false, name);
      assert.equal(state.separator, true);
      assert.deepEqual(state.findings, []);
    }
  });

  test('variable digests, db and dbx entries agree with the variable data tpm2_eventlog prints', { skip: SKIP }, () => {
    const name = 'coreos_36_shielded_vm_no_secure_boot_eventlog';
    const state = deriveSecureBootState(parseEventLog(read(name)));
    const ref = runTpm2Eventlog(join(FIXTURES, name));
    const printed = (variable: string) => {
      const e = ref.events.find((x) => x.pcr === 7 && x.event?.UnicodeName === variable);
      return Buffer.from(String(e!.event!.VariableData ?? ''), 'hex');
    };
    for (const v of ['SecureBoot', 'PK', 'KEK', 'db', 'dbx'] as const)
      assert.equal(state.variables[v]!.sha256, createHash('sha256').update(printed(v)).digest('hex'), v);
    const dbx = printed('dbx');
    assert.ok(state.dbx.length > 100);
    for (const entry of state.dbx.filter((e) => e.type === 'sha256'))
      assert.ok(dbx.includes(Buffer.from(entry.sha256, 'hex')), entry.sha256);
    const certs = state.db.filter((e) => e.type === 'x509');
    assert.equal(certs.length, 2);
  });

  test('boot components: shim and grub in PCR 4, the command line in PCR 8, kernel and initrd in PCR 9', () => {
    const { components, findings } = extractBootComponents(
      parseEventLog(read('coreos_36_shielded_vm_no_secure_boot_eventlog')),
    );
    assert.deepEqual(findings, []);
    const kinds = components.filter((c) => c.kind !== 'file').map((c) => `${c.kind}@${c.pcr}`);
    assert.deepEqual(kinds, ['shim@4', 'bootloader@4', 'cmdline@8', 'kernel@9', 'initrd@9']);
    const cmdline = components.find((c) => c.kind === 'cmdline')!;
    assert.equal(cmdline.digest, createHash('sha256').update(cmdline.label).digest('hex'));
    assert.match(cmdline.label, /ignition\.platform\.id=/);
  });
});

describe('only digests are trusted', () => {
  const coreos = read('coreos_36_shielded_vm_no_secure_boot_eventlog');

  test('a Secure Boot variable relabelled as an action is reported, and the PCRs do not notice', () => {
    const relabelled = relabel(coreos, 3, EV.EFI_ACTION);
    assert.deepEqual(replayEventLog(parseEventLog(relabelled)), replayEventLog(parseEventLog(coreos)));
    const codes = deriveSecureBootState(parseEventLog(relabelled)).findings.map((f) => [f.code, f.sequence]);
    assert.deepEqual(codes, [['EVENT_RELABELLED', 3]]);
  });

  test('the separator relabelled, and an image relabelled as an action, are reported', () => {
    // The authorities after it now look measured before any separator, under the wrong label too.
    const sep = deriveSecureBootState(parseEventLog(relabel(coreos, 8, EV.EFI_ACTION)));
    assert.deepEqual(
      sep.findings.map((f) => [f.code, f.sequence]),
      [
        ['EVENT_RELABELLED', 8],
        ['EVENT_RELABELLED', 25],
        ['EVENT_RELABELLED', 26],
        ['SEPARATOR_MISSING', undefined],
      ],
    );
    const image = extractBootComponents(parseEventLog(relabel(coreos, 22, EV.EFI_ACTION)));
    assert.deepEqual(
      image.findings.map((f) => [f.code, f.sequence]),
      [['EVENT_RELABELLED', 22]],
    );
    assert.equal(image.components.filter((c) => c.pcr === 4).length, 2, 'still counted as an image');
  });

  test('SecureBoot edited from 0 to 1 in the data is not believed', () => {
    const log = parseEventLog(coreos);
    const event = log.events[3]!;
    const edited = Buffer.from(coreos);
    edited[event.offset + eventDataStart(log, 3) + event.data.length - 1] = 1;
    const state = deriveSecureBootState(parseEventLog(edited));
    assert.equal(state.enabled, false);
    assert.deepEqual(
      state.findings.map((f) => f.code),
      ['EVENT_UNVERIFIED'],
    );
  });
});

/** Offset of event `i`'s data from the event's start (header fields and digests before it). */
function eventDataStart(log: ReturnType<typeof parseEventLog>, i: number): number {
  const e = log.events[i]!;
  return log.events[i + 1]!.offset - e.offset - e.data.length;
}

const banks = [TPM_ALG.SHA256];
const variable = (name: string, guid: string, value: Buffer, type: number = EV.EFI_VARIABLE_DRIVER_CONFIG) =>
  measuredEvent(7, type, encodeUefiVariableData({ guid, name, value }), banks);
const separator = (pcr: number) => measuredEvent(pcr, EV.SEPARATOR, Buffer.alloc(4), banks);
const stateOf = (events: EventToWrite[]) => deriveSecureBootState(parseEventLog(encodeEventLog(banks, events)));

describe('Secure Boot findings on written logs', () => {
  const revoked = createHash('sha256').update('revoked image').digest();
  const dbx = encodeSignatureList(EFI_CERT_SHA256, EFI_GLOBAL_VARIABLE, [revoked]);

  test('a complete PCR 7: enabled, dbx entries, no findings', () => {
    const state = stateOf([
      variable('SecureBoot', EFI_GLOBAL_VARIABLE, Buffer.from([1])),
      variable('dbx', EFI_IMAGE_SECURITY_DATABASE, dbx),
      separator(7),
      variable('db', EFI_IMAGE_SECURITY_DATABASE, Buffer.from('cert'), EV.EFI_VARIABLE_AUTHORITY),
    ]);
    assert.equal(state.enabled, true);
    assert.deepEqual(
      state.dbx.map((e) => [e.type, e.sha256]),
      [['sha256', revoked.toString('hex')]],
    );
    assert.deepEqual(
      state.authorities.map((a) => a.name),
      ['db'],
    );
    assert.deepEqual(state.findings, []);
  });

  test('no separator, a second separator, an event that does not belong, debug mode, a bad dbx', () => {
    const codes = (events: EventToWrite[]) => stateOf(events).findings.map((f) => f.code);
    assert.deepEqual(codes([variable('SecureBoot', EFI_GLOBAL_VARIABLE, Buffer.from([1]))]), ['SEPARATOR_MISSING']);
    assert.deepEqual(codes([separator(7), separator(7)]), ['EVENT_NOT_ALLOWED']);
    assert.deepEqual(codes([measuredEvent(7, EV.EFI_ACTION, Buffer.from('hello'), banks), separator(7)]), [
      'EVENT_NOT_ALLOWED',
    ]);
    assert.deepEqual(codes([measuredEvent(7, EV.EFI_ACTION, Buffer.from('UEFI Debug Mode'), banks), separator(7)]), [
      'DEBUG_MODE',
    ]);
    assert.deepEqual(codes([variable('dbx', EFI_IMAGE_SECURITY_DATABASE, Buffer.from('junk')), separator(7)]), [
      'VARIABLE_MALFORMED',
    ]);
    assert.deepEqual(
      codes([
        variable('SecureBoot', EFI_GLOBAL_VARIABLE, Buffer.from([1])),
        variable('SecureBoot', EFI_GLOBAL_VARIABLE, Buffer.from([0])),
        separator(7),
      ]),
      ['VARIABLE_DUPLICATED'],
    );
    assert.deepEqual(codes([measuredEvent(7, EV.SEPARATOR, Buffer.alloc(4, 0xff), banks)]), [
      'SEPARATOR_ERROR',
      'SEPARATOR_MISSING',
    ]);
  });

  test('UEFI_VARIABLE_DATA and signature lists from random bytes: parsed or refused with a typed error', () => {
    const typed = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        if (!isEdgeguardError(e, 'EG_EVENTLOG_MALFORMED')) throw e;
      }
    };
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 256 }), fc.nat(), fc.nat(), (bytes, a, b) => {
        const buf = Buffer.from(bytes);
        typed(() => parseUefiVariableData(buf));
        typed(() => parseSignatureDatabase(buf));
        const list = Buffer.from(dbx);
        list.writeUInt32LE(a >>> 0, 16);
        list.writeUInt32LE(b >>> 0, 24);
        typed(() => parseSignatureDatabase(list));
      }),
      { numRuns: 20_000 },
    );
  });
});
