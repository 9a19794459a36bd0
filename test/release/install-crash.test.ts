/**
 * Crash safety of the A/B install (issue 14, must-show): the installing process is killed with
 * SIGKILL at every step boundary of an install and at 50 random moments of it. After each kill the
 * device restarts (recovery) and must serve a model that verifies, either the old release or the
 * new one, whole (the pointer's manifest, the slot's files and the loaded model agree), and its
 * trusted TUF metadata must still parse.
 *
 * The child (install-child.mjs) runs one update from a copy of the same starting state: v1 active,
 * v2 published with fresh TUF metadata versions, so the kill can land in the metadata refresh, the
 * download, the staging, the trial load, the switch or the commit. Every kill leaves the install
 * lock behind: the restart takes it over (its holder is gone) and releases it.
 *
 * Speed (docs/benchmarks.md): the child runs the compiled code in dist/, not TypeScript through
 * tsx (whose per-process start and transform cost was most of the test's time); the repository,
 * the device and the v1 install are made once and copied per kill.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { access, cp, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Metadata, MetadataKind } from '@tufjs/models';
import { abFixture, SMOKE_IMAGE, type AbFixture } from './ab-fixture.ts';
import {
  INSTALL_LOCK_FILE,
  SoftwareFloor,
  publishRepository,
  recoverInstall,
  removeInterruptedReplacementsSync,
  slotContentKey,
  trialLoad,
  updateDevice,
} from '../../src/release/index.ts';

/** The boundaries a model install passes (src/release/install-steps.ts). */
const MODEL_STEPS = ['start', 'fetched', 'staged', 'placed', 'trial-loaded', 'switched', 'committed', 'done'];

const CHILD = fileURLToPath(new URL('./install-child.mjs', import.meta.url));
const DIST_RELEASE = fileURLToPath(new URL('../../dist/release/index.js', import.meta.url));
const RANDOM_KILLS = 50;
/** Random moments that fell after the install had finished are drawn again, at most this many times. */
const MAX_MISSED = 25;
/** Children at once: the machine has two cores. */
const PARALLEL = 2;

interface ChildRun {
  steps: string[];
  signal: NodeJS.Signals | null;
  code: number | null;
  /** ms from "ready" to exit (only meaningful for a run that was not killed). */
  installMs: number;
  /** ms from "ready" to the "done" step, when the child reached it. */
  doneMs: number | undefined;
  stdout: string;
  stderr: string;
}

function runChild(f: AbFixture, dataDir: string, hook: string, killAfterMs?: number): Promise<ChildRun> {
  const args = JSON.stringify({
    dataDir,
    deviceDir: f.deviceDir,
    wrappedKeyPath: f.wrappedKeyPath,
    publicKeyPath: f.keys.publicKeyPath,
    url: f.server.url,
    target: f.targets[2],
  });
  const child = spawn(process.execPath, [CHILD, args], {
    env: { ...process.env, EDGEGUARD_INSTALL_STEP_HOOK: hook },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let readyAt = 0;
  let doneMs: number | undefined;
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (!readyAt && stdout.includes('ready\n')) {
        readyAt = performance.now();
        if (killAfterMs !== undefined) setTimeout(() => child.kill('SIGKILL'), killAfterMs).unref();
      }
      if (readyAt && doneMs === undefined && /^install-step done$/m.test(stdout)) doneMs = performance.now() - readyAt;
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const steps = [...stdout.matchAll(/^install-step (\S+)$/gm)].map((m) => m[1]!);
      resolve({ steps, signal, code, installMs: performance.now() - readyAt, doneMs, stdout, stderr });
    });
  });
}

/** What a restarted device serves, checked whole; returns its version. */
async function restartAndCheck(f: AbFixture, dataDir: string, what: string): Promise<number> {
  const floor = new SoftwareFloor(dataDir);
  const state = await recoverInstall({ dataDir, floor });
  removeInterruptedReplacementsSync(join(dataDir, 'tuf'));
  assert.ok(state.active, `${what}: no active slot after the restart`);
  const r = state.active.manifest.release;
  assert.ok(r.version === 1 || r.version === 2, `${what}: serves version ${r.version}`);
  // The slot's package decrypts, verifies and loads; it is the release its manifest names (never a mix).
  await trialLoad({
    packagePath: state.active.packagePath,
    publicKeys: [f.keys.signer.publicKey],
    contentKey: slotContentKey(state.active, { wrapped: f.wrappedKeyPath, device: f.deviceDir, store: f.store }),
    expect: { name: r.name, version: r.version, headerSha256: state.active.manifest.headerSha256 },
    smokeTest: { input: await readFile(SMOKE_IMAGE), expectedLabel: '3' },
  });
  assert.ok((await floor.read('model')) <= r.version, `${what}: floor above the served version`);
  assert.equal(await floor.read('model'), r.minVersion, `${what}: the commit was not completed at restart`);
  assert.deepEqual(
    (await readdir(join(dataDir, 'releases'))).filter((n) => n.startsWith('.staging') || n.includes('.tmp-')),
    [],
    `${what}: an interrupted install was left behind`,
  );
  assert.deepEqual(
    (await readdir(dataDir)).filter((n) => n.startsWith(INSTALL_LOCK_FILE)),
    [],
    `${what}: the install lock (or a takeover's file) was left behind after the restart`,
  );
  await checkTrustedMetadata(join(dataDir, 'tuf'), what);
  return r.version;
}

const KINDS: Record<string, MetadataKind> = {
  'root.json': MetadataKind.Root,
  'timestamp.json': MetadataKind.Timestamp,
  'snapshot.json': MetadataKind.Snapshot,
  'targets.json': MetadataKind.Targets,
};

async function checkTrustedMetadata(dir: string, what: string): Promise<void> {
  const names = await readdir(dir);
  assert.ok(names.includes('root.json'), `${what}: root.json is gone`);
  for (const n of names) {
    const kind = KINDS[n];
    assert.ok(kind, `${what}: unexpected file ${n} in the trusted metadata`);
    const text = await readFile(join(dir, n), 'utf8');
    assert.doesNotThrow(
      () => Metadata.fromJSON(kind as MetadataKind.Root, JSON.parse(text)),
      `${what}: ${n} does not parse`,
    );
  }
}

async function pool<T>(items: T[], n: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < items.length) {
        const i = next++;
        await fn(items[i]!, i);
      }
    }),
  );
}

test('SIGKILL at every install step boundary and at 50 random moments: the device serves v1 or v2, whole', async (t) => {
  await access(DIST_RELEASE).catch(() =>
    assert.fail('the crash test runs the compiled code: run `npm run build` first'),
  );
  const f = await abFixture(t);
  const template = join(f.tmp, 'template');
  await cp(join(f.dataDir, 'tuf'), join(template, 'tuf'), { recursive: true });
  const installed = await updateDevice({
    install: {
      dataDir: template,
      publicKeys: [f.keys.signer.publicKey],
      contentKey: { wrapped: f.wrappedKeyPath, device: f.deviceDir, store: f.store },
      floor: new SoftwareFloor(template),
    },
    metadataDir: join(template, 'tuf'),
    metadataBaseUrl: `${f.server.url}/metadata`,
    targetBaseUrl: `${f.server.url}/targets`,
    downloadDir: join(template, 'download'),
    target: f.targets[1]!,
  });
  assert.equal(installed.ok, true, JSON.stringify(installed.error));
  // New metadata versions, so the child's refresh writes every trusted file again.
  await publishRepository(f.repo);

  let n = 0;
  const fresh = async () => {
    const dir = join(f.tmp, `case-${n++}`);
    await cp(template, dir, { recursive: true });
    return dir;
  };

  // An uninterrupted run: the steps it passes and how long it takes.
  const fullDir = await fresh();
  const full = await runChild(f, fullDir, 'print');
  assert.equal(full.code, 0, full.stderr);
  assert.match(full.stdout, /outcome \{"target":[^\n]*"ok":true/);
  assert.deepEqual(full.steps, MODEL_STEPS);
  assert.equal(await restartAndCheck(f, fullDir, 'uninterrupted'), 2);

  const served = { 1: 0, 2: 0 } as Record<number, number>;
  await pool([...full.steps], PARALLEL, async (step) => {
    const dir = await fresh();
    const run = await runChild(f, dir, `kill:${step}`);
    assert.equal(run.signal, 'SIGKILL', `kill at ${step}: ${run.stderr}`);
    assert.equal(run.steps.at(-1), step);
    const v = await restartAndCheck(f, dir, `killed at ${step}`);
    // Before the pointer's rename the old release serves, from it on the new one.
    const switched = full.steps.indexOf(step) >= full.steps.indexOf('switched');
    assert.equal(v, switched ? 2 : 1, `killed at ${step}`);
    served[v]!++;
  });

  // A kill counts when it lands inside the install: after "ready", before the last boundary.
  // The moments are drawn within the shortest install seen so far: the uninterrupted run may have
  // been timed while other test files loaded the machine, so an install that finished before its
  // kill shortens the window the next moments are drawn from.
  let drawWithin = full.installMs;
  let missed = 0;
  await pool(
    Array.from({ length: RANDOM_KILLS }, (_, i) => i),
    PARALLEL,
    async () => {
      for (;;) {
        const ms = Math.random() * drawWithin;
        const dir = await fresh();
        const run = await runChild(f, dir, 'print', ms);
        const what = `killed ${ms.toFixed(0)} ms after ready (last step ${run.steps.at(-1) ?? 'none'}, ${run.signal ?? run.code})`;
        served[await restartAndCheck(f, dir, what)]!++;
        if (run.signal === 'SIGKILL' && !run.steps.includes('done')) return;
        drawWithin = Math.min(drawWithin, run.doneMs ?? run.installMs);
        assert.ok(++missed <= MAX_MISSED, `${missed} random kills landed after the install had finished`);
      }
    },
  );
  t.diagnostic(
    `served after the kills: v1 ${served[1]} times, v2 ${served[2]} times (${missed} random moments after the install drawn again); install ${full.installMs.toFixed(0)} ms, moments drawn within ${drawWithin.toFixed(0)} ms`,
  );
});
