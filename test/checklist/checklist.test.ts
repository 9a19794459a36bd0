/**
 * `edgeguard checklist` on a demo-like device, run by the real CLI inside a network namespace
 * whose kernel holds the generated egress rules: all ten items with evidence, then each control
 * broken in turn makes its item fail; --sarif validates against the published SARIF 2.1.0 schema.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import AjvDraft04 from 'ajv-draft-04';
import { encodeJournalRecord, JOURNAL_MAGIC, parseJournal } from '../../src/audit/index.ts';
import { verifySignedReport, type ChecklistReport, type ReportResult } from '../../src/checklist/index.ts';
import { X509Certificate } from 'node:crypto';
import { EFI_GLOBAL_VARIABLE_GUID, egressConfigSchema, planEgress, renderNftables } from '../../src/harden/index.ts';
import { NETNS_SKIP, createNetnsPair, type NetnsPair } from '../helpers/netns.ts';
import { runCli, type CliResult } from '../helpers/cli.ts';
import { FIXTURES } from '../helpers/workspace.ts';
import { CONTROL_PLANE, makeDemoDevice, setSecureBoot, type DemoDevice } from './demo-device.ts';

describe('edgeguard checklist on a device', { skip: NETNS_SKIP }, () => {
  let device: DemoDevice;
  let net: NetnsPair | undefined;
  let rulesFile: string;
  let dir: string | undefined;

  /** The CLI inside the device's network namespace, where the egress rules live. */
  function checklist(args: string[]): Promise<CliResult> {
    const target = ['--device', device.deviceDir, '--config', device.configPath, '--root', device.root];
    return runCli(['checklist', ...target, ...args], { wrapper: ['ip', 'netns', 'exec', net!.names.device] });
  }

  /** The checklist run while the efivarfs says Secure Boot is off (one FAIL among the items). */
  async function withSecureBootOff(args: string[]): Promise<CliResult> {
    await setSecureBoot(device.root, 0);
    try {
      return await checklist(args);
    } finally {
      await setSecureBoot(device.root, 1);
    }
  }

  async function items(args: string[] = []): Promise<Map<string, ReportResult>> {
    const run = await checklist(['--json', ...args]);
    assert.equal(run.code, 0, run.stderr);
    const report = JSON.parse(run.stdout) as ChecklistReport;
    assert.equal(report.type, 'edgeguard-checklist');
    const results = report.controls.flatMap((c) => c.tests.flatMap((t) => t.results));
    return new Map(results.map((r) => [r.id, r]));
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'eg-checklist-'));
    device = await makeDemoDevice(dir);
    net = await createNetnsPair({ device: '10.77.0.1', server: ['10.77.0.2', '10.77.0.53'], prefix: 24 });
    const egress = egressConfigSchema.parse({ controlPlane: CONTROL_PLANE, dns: ['10.77.0.53'] });
    rulesFile = join(dir, 'egress.nft');
    await writeFile(rulesFile, renderNftables(await planEgress({ egress, uploadServer: CONTROL_PLANE })));
    await net.exec('device', ['nft', '-f', rulesFile]);
  });
  after(async () => {
    await net?.remove();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('the demo device: ten items, each with evidence, in the expected state', async () => {
    const byId = await items();
    assert.deepEqual(
      [...byId.keys()].sort(),
      ['01', '02', '03', '04', '05', '06', '07', '08', '09', '10'].map((n) => `EG-${n}`),
    );
    const expected: Record<string, string> = {
      'EG-01': 'WARN', // a software key store: encrypted, but the key is not hardware-bound
      'EG-02': 'PASS',
      'EG-03': 'PASS',
      'EG-04': 'PASS',
      'EG-05': 'PASS',
      'EG-06': 'PASS',
      'EG-07': 'NOT-AVAILABLE',
      'EG-08': 'PASS',
      'EG-09': 'NOT-AVAILABLE',
      'EG-10': 'PASS',
    };
    for (const [id, r] of byId) {
      assert.equal(r.status, expected[id], `${id}: ${r.actual}`);
      assert.ok(r.evidence.length > 0, `${id} has no evidence`);
      for (const field of ['desc', 'audit', 'actual', 'expected', 'remediation'] as const)
        assert.ok(r[field], `${id}.${field}`);
    }
    assert.ok(byId.get('EG-01')!.evidence.some((e) => e.name === 'package sha256'));
    assert.ok(byId.get('EG-03')!.evidence.some((e) => e.name.startsWith('live rule set sha256')));
    assert.match(byId.get('EG-10')!.evidence.find((e) => e.name.startsWith('journal head'))!.value, /^3 [0-9a-f]{64}$/);
  });

  test('text output: one line per item, a summary and a score; no colour off a TTY', async () => {
    const run = await checklist([]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout.split('\n').filter((l) => /^\[[A-Z-]+ *\] EG-\d\d /.test(l)).length, 10);
    assert.match(run.stdout, /^7 pass, 0 fail, 1 warn, 0 not applicable, 2 not available$/m);
    assert.match(run.stdout, /^score: 75\/100$/m);
    assert.ok(!run.stdout.includes('\u001b['), 'no ANSI escapes');
  });

  test('the rule-set digest is of the rules, not the traffic: a dropped packet leaves it unchanged', async () => {
    const digest = (r: ReportResult) => r.evidence.find((e) => e.name.startsWith('live rule set sha256'))!.value;
    const before = (await items()).get('EG-03')!;
    // A UDP datagram to an address the rules do not allow: the output chain drops and counts it
    // (sendmsg then fails with EPERM), and the sender exits either way once the send completed.
    const send = "require('node:dgram').createSocket('udp4').send('x', 9, '10.77.0.3', () => process.exit(0))";
    await net!.exec('device', [process.execPath, '-e', send]);
    const after = (await items()).get('EG-03')!;
    assert.notEqual(after.actual, before.actual, 'the drop counter moved');
    assert.equal(digest(after), digest(before));
  });

  async function assertFails(id: string, pattern: RegExp): Promise<void> {
    const r = (await items()).get(id)!;
    assert.equal(r.status, 'FAIL', `${id}: ${r.actual}`);
    assert.match(r.actual, pattern);
    const exit = await checklist(['--json', '--exit-code', '7']);
    assert.equal(exit.code, 7, 'a failing item exits with --exit-code');
  }

  test('egress rules flushed from the kernel: EG-03 fails', async () => {
    await net!.exec('device', ['nft', 'flush', 'ruleset']);
    try {
      await assertFails('EG-03', /is not loaded/);
    } finally {
      await net!.exec('device', ['nft', '-f', rulesFile]);
    }
    assert.equal((await items()).get('EG-03')!.status, 'PASS');
  });

  test('a plaintext model next to the packages: EG-01 fails, by name and by content', async () => {
    const onnx = join(device.modelsDir, 'mnist-cnn.onnx');
    await copyFile(join(FIXTURES, 'models', 'mnist-cnn.onnx'), onnx);
    try {
      await assertFails('EG-01', /plaintext model on disk: .*mnist-cnn\.onnx \(an \.onnx file\)/);
    } finally {
      await rm(onnx);
    }
    const disguised = join(device.modelsDir, 'weights.bin');
    await copyFile(join(FIXTURES, 'models', 'mnist-mlp.onnx'), disguised);
    try {
      await assertFails('EG-01', /weights\.bin \(ONNX protobuf bytes\)/);
    } finally {
      await rm(disguised);
    }
  });

  test('Secure Boot off, or its variable malformed, in efivarfs: EG-02 fails', async () => {
    await setSecureBoot(device.root, 0);
    try {
      await assertFails('EG-02', /SecureBoot = 0/);
    } finally {
      await setSecureBoot(device.root, 1);
    }
    // A variable of the wrong size is not read as on: the item fails with the parser's code.
    const variable = join(device.root, 'sys', 'firmware', 'efi', 'efivars', `SecureBoot-${EFI_GLOBAL_VARIABLE_GUID}`);
    await writeFile(variable, Buffer.from([0x06, 0, 0, 0, 1, 0]));
    try {
      await assertFails('EG-02', /cannot be trusted: EG_TRAILING_DATA/);
    } finally {
      await setSecureBoot(device.root, 1);
    }
  });

  test('a journal entry deleted: EG-10 fails with the gap', async () => {
    const original = await readFile(device.journalPath);
    const { entries } = parseJournal(original);
    const kept = entries.filter((e) => e.seq !== 1).map((e) => encodeJournalRecord(e));
    await writeFile(device.journalPath, Buffer.concat([JOURNAL_MAGIC, ...kept]));
    try {
      await assertFails('EG-10', /seq 1\.\.1 are missing/);
    } finally {
      await writeFile(device.journalPath, original);
    }
  });

  test('a PNG, or a plaintext file named like an item, in the review spool: EG-05 fails', async () => {
    const png = join(device.spoolDir, 'input.png');
    await copyFile(join(FIXTURES, 'guard', 'fgsm-4-as-8.png'), png);
    try {
      await assertFails('EG-05', /not a sealed item.*PNG image on disk/);
    } finally {
      await rm(png);
    }
    const forged = join(device.spoolDir, '0000000000000001-forged.egr');
    await writeFile(forged, 'an input in plaintext, named like a sealed item');
    try {
      await assertFails('EG-05', /0000000000000001-forged\.egr in the review spool is not a sealed item \(EG_/);
    } finally {
      await rm(forged);
    }
  });

  test('--sarif validates against the SARIF 2.1.0 schema, with kind and level per status', async () => {
    const schema = JSON.parse(await readFile(join(import.meta.dirname, 'fixtures', 'sarif-schema-2.1.0.json'), 'utf8'));
    // ajv-draft-04 is CommonJS: its class is the module's default export.
    const validate = new AjvDraft04.default({ allErrors: true, strict: false }).compile(schema as object);
    const run = await withSecureBootOff(['--sarif']);
    assert.equal(run.code, 0, run.stderr);
    const sarif = JSON.parse(run.stdout) as {
      runs: Array<{ results: Array<Record<string, unknown>>; tool: { driver: { rules: unknown[] } } }>;
    };
    assert.ok(validate(sarif), JSON.stringify(validate.errors, null, 2));
    const results = sarif.runs[0]!.results;
    assert.equal(results.length, 10);
    assert.equal(sarif.runs[0]!.tool.driver.rules.length, 10);
    const byRule = new Map(results.map((r) => [r['ruleId'], r]));
    assert.deepEqual([byRule.get('EG-02')!['kind'], byRule.get('EG-02')!['level']], ['fail', 'error']);
    assert.deepEqual([byRule.get('EG-01')!['kind'], byRule.get('EG-01')!['level']], ['fail', 'warning']);
    assert.deepEqual([byRule.get('EG-03')!['kind'], byRule.get('EG-03')!['level']], ['pass', 'none']);
    assert.deepEqual([byRule.get('EG-07')!['kind'], byRule.get('EG-07')!['level']], ['review', 'none']);
  });

  test('--sign: the JSON report in a DSSE envelope that verifies under the device certificate', async () => {
    const run = await checklist(['--sign']);
    assert.equal(run.code, 0, run.stderr);
    const certificate = new X509Certificate(await readFile(join(device.dir, 'device.crt')));
    const report = verifySignedReport(run.stdout, certificate.publicKey);
    assert.equal(report.type, 'edgeguard-checklist');
    assert.equal(report.controls[0]!.tests.flatMap((t) => t.results).length, 10);
  });

  test('--junit: one testcase per item, failures and skips counted', async () => {
    const run = await withSecureBootOff(['--junit']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^<\?xml version="1\.0" encoding="UTF-8"\?>\n<testsuites /);
    assert.match(run.stdout, /<testsuites name="edgeguard checklist" tests="10" failures="1" errors="0" skipped="2">/);
    assert.equal(run.stdout.match(/<testcase /g)?.length, 10);
    assert.equal(run.stdout.match(/<failure /g)?.length, 1);
    assert.match(run.stdout, /<testcase classname="edgeguard.checklist" name="EG-02 [^"]*">\n {6}<failure /);
  });
});
