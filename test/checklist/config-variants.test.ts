/**
 * Items whose status follows from agent.yaml and the files it names, run in-process on the demo
 * device with one setting changed at a time: no control plane (EG-04 not applicable, EG-10 fails),
 * a device certificate from another CA, a plain content-key file, no guard profile, no nft.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAgentConfig, type AgentConfig } from '../../src/agent/index.ts';
import { runChecklist, type CheckResult } from '../../src/checklist/index.ts';
import { FleetCa } from '../../src/pki/index.ts';
import { makeDemoDevice, type DemoDevice } from './demo-device.ts';
import { lockStatePath, parseTamperConfig } from '../../src/tamper/index.ts';
import { SPOOL_SUFFIX } from '../../src/fleet/index.ts';

describe('checklist items that follow agent.yaml', () => {
  let base: string;
  let device: DemoDevice;
  let config: AgentConfig;

  async function item(id: string, change: (c: AgentConfig) => AgentConfig): Promise<CheckResult> {
    const target = { deviceDir: device.deviceDir, configPath: device.configPath, root: device.root };
    const results = await runChecklist({ ...target, config: change(structuredClone(config)) });
    return results.find((r) => r.id === id)!;
  }

  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'eg-checklist-config-'));
    device = await makeDemoDevice(join(base, 'device'));
    config = await loadAgentConfig(device.configPath);
  });
  after(() => rm(base, { recursive: true, force: true }));

  test('no upload section: EG-04 is not applicable and EG-10 fails (no signed journal)', async () => {
    const withoutUpload = (c: AgentConfig) => ({ ...c, upload: undefined });
    assert.equal((await item('EG-04', withoutUpload)).status, 'NOT-APPLICABLE');
    const eg10 = await item('EG-10', withoutUpload);
    assert.equal(eg10.status, 'FAIL');
    assert.match(eg10.actual, /no journal/);
  });

  test('a device certificate from another CA: EG-04 fails', async () => {
    const other = await FleetCa.create(join(base, 'other-ca'), 'another passphrase');
    const otherRoot = join(base, 'other-root.pem');
    await writeFile(otherRoot, other.rootPem);
    const eg04 = await item(
      'EG-04',
      (c) => ({ ...c, upload: { ...(c.upload as { ca: string }), ca: otherRoot } }) as AgentConfig,
    );
    assert.equal(eg04.status, 'FAIL');
    assert.match(eg04.actual, /not issued by the pinned fleet CA/);
  });

  test('a large journal next to the packages is not a model copy; a large plaintext file is', async () => {
    const journal = join(device.modelsDir, 'audit.journal');
    await writeFile(journal, Buffer.alloc(2 * 1024 * 1024, 'a'));
    const withJournal = (c: AgentConfig) => ({ ...c, journal: { ...c.journal, path: journal } });
    assert.equal((await item('EG-01', withJournal)).status, 'WARN', 'software key store only');
    const eg01 = await item('EG-01', (c) => c);
    assert.equal(eg01.status, 'FAIL');
    assert.match(eg01.actual, /audit\.journal \(a 2097152-byte file that is not ciphertext\)/);
    await rm(journal);
  });

  test('a plain content-key file: EG-01 fails', async () => {
    const eg01 = await item('EG-01', (c) => ({ ...c, contentKey: { file: join(base, 'model.key') } }));
    assert.equal(eg01.status, 'FAIL');
    assert.match(eg01.actual, /plain key file/);
  });

  test('no calibrated profile: EG-08 warns; a damaged one fails', async () => {
    const noProfile = await item('EG-08', (c) => ({ ...c, guard: { ...c.guard, profile: undefined } }));
    assert.equal(noProfile.status, 'WARN');
    const damaged = join(base, 'damaged.profile.json');
    await writeFile(damaged, '{"version": 2');
    const eg08 = await item('EG-08', (c) => ({ ...c, guard: { ...c.guard, profile: damaged } }));
    assert.equal(eg08.status, 'FAIL');
    assert.match(eg08.actual, /EG_FORMAT/);
  });

  test('tamper sensors in agent.yaml: EG-09 passes and names them; none: not available', async () => {
    assert.equal((await item('EG-09', (c) => c)).status, 'NOT-AVAILABLE');
    const armed = await item('EG-09', (c) => ({
      ...c,
      tamper: parseTamperConfig({ sensors: [{ kind: 'intrusion', name: 'chassis', hwmon: 'hwmon0' }] }),
    }));
    assert.equal(armed.status, 'PASS');
    assert.match(armed.actual, /1 tamper sensor\(s\): intrusion chassis/);
  });

  test('a profile, spool item, CA or lock state far past its size is reported, not read', async () => {
    const sparse = async (path: string) => {
      const h = await open(path, 'w', 0o600);
      await h.truncate(1024 * 1024 * 1024);
      await h.close();
      return path;
    };
    const before = process.memoryUsage().arrayBuffers;
    const profile = await sparse(join(base, 'big.profile.json'));
    const eg08 = await item('EG-08', (c) => ({ ...c, guard: { ...c.guard, profile } }));
    assert.equal(eg08.status, 'FAIL');
    assert.match(eg08.actual, /EG_FILE_TOO_LARGE/);
    const spool = join(base, 'big-spool');
    await mkdir(spool);
    await sparse(join(spool, `item${SPOOL_SUFFIX}`));
    const eg05 = await item('EG-05', (c) => ({
      ...c,
      review: { ...c.review, spool: { ...c.review.spool, dir: spool } },
    }));
    assert.equal(eg05.status, 'FAIL');
    assert.match(eg05.actual, /not a sealed item \(EG_FILE_TOO_LARGE\)/);
    const ca = await sparse(join(base, 'big-ca.pem'));
    const eg04 = await item('EG-04', (c) => ({ ...c, upload: { ...(c.upload as { ca: string }), ca } }) as AgentConfig);
    assert.equal(eg04.status, 'FAIL');
    await sparse(lockStatePath(device.deviceDir));
    try {
      const eg09 = await item('EG-09', (c) => c);
      assert.equal(eg09.status, 'FAIL');
      assert.match(eg09.actual, /damaged.*1073741824 bytes/);
    } finally {
      await rm(lockStatePath(device.deviceDir));
    }
    assert.ok(process.memoryUsage().arrayBuffers - before < 64 * 1024 * 1024);
  });

  test('no nft on the machine: EG-03 is not available; no egress section fails', async () => {
    assert.equal((await item('EG-03', (c) => c)).status, 'NOT-AVAILABLE');
    assert.equal((await item('EG-03', (c) => ({ ...c, egress: undefined }))).status, 'FAIL');
  });
});
