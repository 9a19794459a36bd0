/**
 * A serving agent and `edgeguard agent update`: the agent serves the active release slot, picks up
 * a switch while requests keep arriving (none fails), journals nothing it cannot, and the CLI
 * exits with the refusal's code for a release below the floor, or 11 while another install holds
 * the data directory's install lock (beside which a serving agent starts without recovering).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { abFixture, SMOKE_IMAGE, type AbFixture } from '../release/ab-fixture.ts';
import { CLI, FIXTURES } from '../helpers/workspace.ts';
import { eventually } from '../helpers/wait.ts';
import { agentConfig, runAgentUpdate, startAgent } from '../../src/agent/index.ts';
import { INSTALL_LOCK_FILE, acquireInstallLock, recoverSlots } from '../../src/release/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';

function configOf(f: AbFixture) {
  return {
    listen: { port: 0 },
    trust: { publicKeys: [f.keys.publicKeyPath] },
    contentKey: { wrapped: f.wrappedKeyPath, device: f.deviceDir },
    models: { primary: f.packages[1], ensemble: f.packages[1] },
    review: { enabled: false },
    guard: { profile: join(FIXTURES, 'guard', 'mnist-cnn.profile.json') },
    log: { level: 'silent' },
    update: {
      dir: f.dataDir,
      metadataUrl: `${f.server.url}/metadata`,
      targetsUrl: `${f.server.url}/targets`,
      target: f.targets[1],
      watchIntervalMs: 100,
    },
  };
}

test('a serving agent switches to a newly installed release without failing a request in flight', async (t) => {
  const f = await abFixture(t);
  const config = agentConfig(configOf(f), f.tmp);
  const first = await runAgentUpdate(config);
  assert.equal(first.ok, true, JSON.stringify(first.error));
  const agent = await startAgent(config);
  t.after(() => agent.close());
  const health = async () =>
    (await (await fetch(`${agent.url}/healthz`)).json()) as { models: { primary: { version: number } } };
  assert.equal((await health()).models.primary.version, 1);
  assert.match(agent.runtime.primary.provenance.packagePath!, /releases\/a\/package\.egm$/);

  const image = await readFile(SMOKE_IMAGE);
  const statuses: number[] = [];
  let stop = false;
  const load = (async () => {
    while (!stop) {
      const r = await fetch(`${agent.url}/v1/infer`, {
        method: 'POST',
        headers: { 'content-type': 'image/png' },
        body: image,
      });
      statuses.push(r.status);
      await r.arrayBuffer();
    }
  })();
  const second = await runAgentUpdate(config, { target: f.targets[2] });
  assert.equal(second.ok, true, JSON.stringify(second.error));
  await eventually('the agent serving v2', async () => (await health()).models.primary.version === 2);
  const served = statuses.length;
  await eventually('requests after the switch', () => statuses.length > served + 3);
  stop = true;
  await load;
  assert.ok(statuses.length > 0);
  assert.deepEqual([...new Set(statuses)], [200], 'every request during the switch succeeded');
});

test('`edgeguard agent update` exits 0 on install, 3 with the reason for a release below the floor', async (t) => {
  const f = await abFixture(t);
  const file = join(f.tmp, 'agent.yaml');
  await writeFile(file, JSON.stringify(configOf(f)));
  // Asynchronous: the repository is served from this process.
  const run = (target: string) =>
    new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        [CLI, 'agent', 'update', '--config', file, '--target', target, '--json'],
        (error, stdout, stderr) => resolve({ status: error ? (error.code as number) : 0, stdout, stderr }),
      );
    });
  const ok = await run(f.targets[2]!);
  assert.equal(ok.status, 0, ok.stderr);
  const out = JSON.parse(ok.stdout) as { ok: boolean; slot: string; release: { version: number } };
  assert.equal(out.release.version, 2);
  assert.equal(out.slot, 'a');
  const refused = await run(f.targets[1]!);
  assert.equal(refused.status, 3, refused.stdout + refused.stderr);
  assert.match(refused.stdout + refused.stderr, /EG_RELEASE_REFUSED/);
  assert.match(refused.stdout + refused.stderr, /below-minimum/);
});

test('`edgeguard agent update` while another install holds the lock: exit 11 (EG_BUSY), nothing touched', async (t) => {
  const f = await abFixture(t);
  const file = join(f.tmp, 'agent.yaml');
  await writeFile(file, JSON.stringify(configOf(f)));
  const lock = await acquireInstallLock(f.dataDir);
  t.after(() => lock.release());
  const r = await new Promise<{ status: number | null; stderr: string }>((resolve) => {
    execFile(process.execPath, [CLI, 'agent', 'update', '--config', file], (error, _stdout, stderr) =>
      resolve({ status: error ? (error.code as number) : 0, stderr }),
    );
  });
  assert.equal(r.status, 11, r.stderr);
  assert.equal(
    r.stderr.trim(),
    `EG_BUSY: another install is running (pid ${process.pid} since ${lock.holder.startedAt}); try again later.`,
  );
  assert.deepEqual((await readdir(f.dataDir)).sort(), [INSTALL_LOCK_FILE, 'tuf'], 'no slot, download or report');
});

test('a serving agent started during an install serves the active slot and leaves the install alone', async (t) => {
  const f = await abFixture(t);
  const config = agentConfig(configOf(f), f.tmp);
  assert.equal((await runAgentUpdate(config)).ok, true);
  // Another process's install, mid-way: it holds the lock and is staging slot b.
  const lock = await acquireInstallLock(f.dataDir);
  t.after(() => lock.release());
  const staging = join(f.dataDir, 'releases', '.staging-b');
  await mkdir(staging);
  await writeFile(join(staging, 'package.egm'), 'being written');
  await assert.rejects(runAgentUpdate(config), (e) => isEdgeguardError(e, 'EG_BUSY'));
  const agent = await startAgent(config);
  t.after(() => agent.close());
  const health = (await (await fetch(`${agent.url}/healthz`)).json()) as { models: { primary: { version: number } } };
  assert.equal(health.models.primary.version, 1);
  assert.deepEqual(await readdir(staging), ['package.egm'], 'the running install’s staging is not recovered away');
});

test('an update from a static repository keeps to the egress allowlist: refused unlisted, installed listed', async (t) => {
  const f = await abFixture(t);
  const port = Number(new URL(f.server.url).port);
  const withEndpoints = (endpoints: Array<{ host: string; port: number }>) =>
    agentConfig({ ...configOf(f), egress: { controlPlane: 'https://127.0.0.3:8443', endpoints } }, f.tmp);
  const refused = await runAgentUpdate(withEndpoints([]));
  assert.equal(refused.ok, false);
  assert.equal(refused.error?.code, 'EG_EGRESS_DENIED', JSON.stringify(refused.error));
  assert.equal((await recoverSlots(f.dataDir)).active, undefined, 'nothing was installed');
  const installed = await runAgentUpdate(withEndpoints([{ host: '127.0.0.1', port }]));
  assert.equal(installed.ok, true, JSON.stringify(installed.error));
  assert.equal((await recoverSlots(f.dataDir)).active?.manifest.release.version, 1);
});
