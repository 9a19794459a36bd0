/**
 * PCR prediction (eventlog/predict.ts): a boot with kernel A played into swtpm gives the log; the
 * prediction for kernel B (initrd and command line too) equals the PCRs a fresh swtpm holds after
 * booting B, read from the TPM. Off the TPM: the refusals (a bank whose digest is unknown, a
 * component the log does not measure, a digest of the wrong size) and a property: replacing any
 * events' digests predicts what the log written with those digests replays to.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { isEdgeguardError } from '../../src/errors/index.ts';
import {
  defaultSyntheticBoot,
  encodeEventLog,
  parseEventLog,
  playBoot,
  predictPcrs,
  replayEventLog,
  replayedPcrsFor,
  syntheticBootEvents,
  type SyntheticBoot,
} from '../../src/eventlog/index.ts';
import { TPM_ALG, TpmClient, parsePcrSelection } from '../../src/tpm/index.ts';
import { kernelUpdateBoot } from '../helpers/boots.ts';
import { runCli } from '../helpers/cli.ts';
import { TPM_SKIP, startTestTpm, stopTestTpm, type Swtpm } from '../helpers/swtpm.ts';

const SHA256 = [TPM_ALG.SHA256];
const SELECTION = 'sha256:0,1,2,3,4,5,7,8,9,16';
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest();

const hexValues = (v: Record<string, Record<number, Buffer>>) =>
  Object.fromEntries(
    Object.entries(v).map(([bank, pcrs]) => [
      bank,
      Object.fromEntries(Object.entries(pcrs).map(([i, x]) => [i, x.toString('hex')])),
    ]),
  );

describe('PCR prediction against swtpm', { skip: TPM_SKIP }, () => {
  const started: Swtpm[] = [];
  let work: string | undefined;
  after(async () => {
    for (const t of started) await stopTestTpm(t);
    if (work) await rm(work, { recursive: true, force: true });
  });

  async function bootFresh(boot: SyntheticBoot): Promise<{ log: Buffer; client: TpmClient }> {
    const tpm = await startTestTpm();
    started.push(tpm);
    const client = new TpmClient({ tcti: tpm.tcti });
    return { log: await playBoot(client, SHA256, syntheticBootEvents(boot, SHA256)), client };
  }

  test('kernel A played, kernel B predicted: the prediction is what a fresh TPM holds after booting B', async () => {
    const a = await bootFresh(defaultSyntheticBoot());
    const b = kernelUpdateBoot();
    const selection = parsePcrSelection(SELECTION);
    const p = predictPcrs(parseEventLog(a.log), selection, {
      kernel: { sha256: sha256(b.kernel) },
      initrd: { sha256: sha256(b.initrd) },
      cmdline: b.cmdline,
    });
    assert.deepEqual(p.changed, ['sha256:4', 'sha256:8', 'sha256:9']);
    assert.deepEqual(
      p.replaced.map((r) => `${r.pcr}:${r.what}`),
      ['9:kernel (PCR 9)', '8:command line', '4:kernel (PCR 4)', '9:initrd'],
    );
    const booted = await bootFresh(b);
    assert.deepEqual(hexValues(p.values), hexValues(await booted.client.readPcrs(selection)));
    // Unchanged boot, unchanged values: the prediction of A is what A's TPM holds.
    const same = predictPcrs(parseEventLog(a.log), selection, {});
    assert.deepEqual(hexValues(same.values), hexValues(await a.client.readPcrs(selection)));
    assert.deepEqual(same.changed, []);
  });

  test('the CLI writes the values file that authorize-pcrs signs', async () => {
    work = await mkdtemp(join(tmpdir(), 'eg-predict-'));
    const a = await bootFresh(defaultSyntheticBoot());
    const logPath = join(work, 'golden.bin');
    await writeFile(logPath, a.log);
    const b = kernelUpdateBoot();
    const valuesPath = join(work, 'values.json');
    const predicted = await runCli([
      'attest',
      'predict-pcrs',
      '--log',
      logPath,
      '--kernel',
      `sha256:${sha256(b.kernel).toString('hex')}`,
      '--pcrs',
      'sha256:0,1,2,3,4,5,7',
      '-o',
      valuesPath,
      '--json',
    ]);
    assert.equal(predicted.code, 0, predicted.stderr);
    assert.match(predicted.stderr, /Authenticode/);
    const out = JSON.parse(predicted.stdout);
    assert.deepEqual(out.changed, ['sha256:4']);
    const file = JSON.parse(await readFile(valuesPath, 'utf8'));
    assert.equal(file.type, 'edgeguard-pcr-prediction');
    assert.equal(file.log.sha256, sha256(a.log).toString('hex'));

    const key = await runCli(['attest', 'policy-key', 'create', '-o', join(work, 'op')]);
    assert.equal(key.code, 0, key.stderr);
    const signed = await runCli([
      'attest',
      'authorize-pcrs',
      '--key',
      join(work, 'op.key'),
      '--pcrs',
      'sha256:0,1,2,3,4,5,7',
      '--values',
      valuesPath,
      '-o',
      join(work, 'auth.json'),
      '--json',
    ]);
    assert.equal(signed.code, 0, signed.stderr);
    const auth = JSON.parse(await readFile(join(work, 'auth.json'), 'utf8'));
    assert.deepEqual(auth.pcrValues, file.pcrValues);

    const bad = await runCli([
      'attest',
      'predict-pcrs',
      '--log',
      logPath,
      '--kernel',
      'sha256:00',
      '--pcrs',
      'sha256:4',
    ]);
    assert.equal(bad.code, 2, bad.stderr);
  });
});

describe('PCR prediction without a TPM', () => {
  const twoBanks = [TPM_ALG.SHA1, TPM_ALG.SHA256];
  const log = parseEventLog(encodeEventLog(twoBanks, syntheticBootEvents(defaultSyntheticBoot(), twoBanks)));
  const kernel = { sha256: sha256(Buffer.from('another kernel')) };

  test('a selected bank whose new digest is unknown is refused, never guessed', () => {
    assert.throws(
      () => predictPcrs(log, parsePcrSelection('sha1:4+sha256:4'), { kernel }),
      (e) => isEdgeguardError(e, 'EG_USAGE') && /sha1:4/.test(e.message),
    );
    const p = predictPcrs(log, parsePcrSelection('sha1:0,7+sha256:4'), { kernel });
    assert.deepEqual(p.changed, ['sha256:4']);
    // The command line is text: every bank is computed.
    const c = predictPcrs(log, parsePcrSelection('sha1:8+sha256:8'), { cmdline: 'quiet' });
    assert.deepEqual(c.changed, ['sha1:8', 'sha256:8']);
  });

  test('wrong sizes, unknown banks, components and events the log lacks: EG_USAGE', () => {
    const sel = parsePcrSelection('sha256:4');
    const usage = (e: unknown) => isEdgeguardError(e, 'EG_USAGE');
    assert.throws(() => predictPcrs(log, sel, { kernel: { sha256: Buffer.alloc(20) } }), usage);
    assert.throws(() => predictPcrs(log, sel, { kernel: { sha384: Buffer.alloc(48) } }), usage);
    assert.throws(() => predictPcrs(log, sel, { events: [{ sequence: 999, digests: kernel }] }), usage);
    assert.throws(() => predictPcrs(log, sel, { events: [{ sequence: 1, text: 'x' }] }), usage);
    assert.throws(() => predictPcrs(log, parsePcrSelection('sha384:4'), {}), usage);
    const noKernel = parseEventLog(
      encodeEventLog(
        SHA256,
        syntheticBootEvents(defaultSyntheticBoot(), SHA256).filter((e) => e.pcr !== 4 && e.pcr !== 9),
      ),
    );
    assert.throws(
      () => predictPcrs(noKernel, sel, { kernel }),
      (e) => usage(e) && /measures no kernel/.test(String(e)),
    );
  });

  test('property: replacing events predicts what the log written with the new digests replays to', () => {
    const events = syntheticBootEvents(defaultSyntheticBoot(), SHA256);
    const selection = parsePcrSelection('sha256:0,1,2,3,4,5,6,7,8,9');
    const base = parseEventLog(encodeEventLog(SHA256, events));
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 0, max: events.length - 1 }), { minLength: 1, maxLength: 5 }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        (indices, seed) => {
          const digestFor = (i: number) => sha256(Buffer.concat([Buffer.from(seed), Buffer.from([i])]));
          const rewritten = events.map((e, i) =>
            indices.includes(i) ? { ...e, digests: [{ alg: TPM_ALG.SHA256, digest: digestFor(i) }] } : e,
          );
          const expected = replayedPcrsFor(replayEventLog(parseEventLog(encodeEventLog(SHA256, rewritten))), selection);
          const p = predictPcrs(base, selection, {
            events: indices.map((i) => ({ sequence: base.events[i + 1]!.sequence, digests: { sha256: digestFor(i) } })),
          });
          assert.deepEqual(hexValues(p.values), hexValues(expected));
        },
      ),
      { numRuns: 100 },
    );
  });
});
