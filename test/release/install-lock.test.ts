/**
 * The install lock across processes (src/release/install-lock.ts): the lock record's parser on bad
 * input, the staleness verdicts against real processes, takeover of a lock whose holder died, a
 * refusal while a live process holds it, and real processes racing: for a free lock, for a stale
 * one, and two device updates on one data directory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { access, readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { tempDir } from '../helpers/workspace.ts';
import { abFixture } from './ab-fixture.ts';
import {
  INSTALL_LOCK_FILE,
  MAX_INSTALL_LOCK_BYTES,
  SoftwareFloor,
  UNPARSABLE_LOCK_GRACE_MS,
  acquireInstallLock,
  judgeInstallLock,
  parseInstallLock,
  processStartTime,
  recoverSlots,
  startTimeFromStat,
  updateDevice,
  withInstallLock,
  type InstallLockHolder,
} from '../../src/release/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';

const LOCK_CHILD = fileURLToPath(new URL('./lock-child.mjs', import.meta.url));
const INSTALL_CHILD = fileURLToPath(new URL('./install-child.mjs', import.meta.url));
const DIST_RELEASE = fileURLToPath(new URL('../../dist/release/index.js', import.meta.url));

async function needDist(): Promise<void> {
  await access(DIST_RELEASE).catch(() => assert.fail('these tests run children from dist/: run `npm run build` first'));
}

function bootId(): string | null {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return null;
  }
}

function record(over: Partial<InstallLockHolder> = {}): InstallLockHolder {
  return {
    type: 'edgeguard-install-lock',
    version: 1,
    pid: process.pid,
    hostname: hostname(),
    bootId: bootId(),
    processStart: processStartTime(process.pid) ?? null,
    startedAt: '2026-12-02T10:00:00.000Z',
    nonce: '0123456789abcdef0123456789abcdef',
    ...over,
  };
}

const bytesOf = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v));

/** A node process that stays alive until killed; resolves once it runs. */
async function liveProcess(t: { after(fn: () => void): void }): Promise<ChildProcessWithoutNullStreams> {
  const child = spawn(process.execPath, ['-e', 'process.stdout.write("up\\n"); setInterval(() => {}, 1e6)']);
  t.after(() => child.kill('SIGKILL'));
  await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
  return child;
}

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '0']);
  await new Promise((resolve) => child.on('exit', resolve));
  return child.pid!;
}

test('the lock record parser takes exactly a lock record and nothing else', () => {
  assert.deepEqual(parseInstallLock(bytesOf(record())), record());
  const bad: unknown[] = [
    '',
    '{',
    'null',
    '[]',
    '{}',
    '"install.lock"',
    JSON.stringify(record()) + 'x',
    { ...record(), extra: 1 },
    { ...record(), type: 'edgeguard-slot' },
    { ...record(), version: 2 },
    { ...record(), pid: 0 },
    { ...record(), pid: -1 },
    { ...record(), pid: 1.5 },
    { ...record(), pid: '123' },
    { ...record(), pid: 2 ** 22 + 1 },
    { ...record(), hostname: 'h'.repeat(256) },
    { ...record(), bootId: 'not-a-boot-id' },
    { ...record(), processStart: '12a' },
    { ...record(), processStart: 12 },
    { ...record(), startedAt: 'yesterday' },
    { ...record(), nonce: 'abc' },
    { ...record(), nonce: 'G'.repeat(32) },
  ];
  for (const b of bad) assert.equal(parseInstallLock(bytesOf(b)), undefined, JSON.stringify(b));
  const padded = Buffer.concat([bytesOf(record()), Buffer.alloc(MAX_INSTALL_LOCK_BYTES, 0x20)]);
  assert.equal(parseInstallLock(padded), undefined, 'longer than a record may be');
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 2048 }), (b) => {
      parseInstallLock(b);
    }),
  );
  fc.assert(
    fc.property(fc.jsonValue(), (v) => {
      parseInstallLock(bytesOf(v));
    }),
  );
});

test('the start time is field 22 of /proc/PID/stat, whatever the command name holds', () => {
  const tail = 'S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 424242 99 100';
  assert.equal(startTimeFromStat(`77 (node) ${tail}`), '424242');
  assert.equal(startTimeFromStat(`77 (a) b) (c) ${tail}`), '424242');
  for (const bad of ['', '77 node S 1 2', '77 (node) S 1 2 3', `77 (node) ${tail.replace('424242', '-5')}`])
    assert.equal(startTimeFromStat(bad), undefined, bad);
  assert.match(processStartTime(process.pid) ?? '', /^\d+$/);
});

test('verdicts: live holder, gone holder, reused pid, other boot, other host, unparsable', async (t) => {
  const live = await liveProcess(t);
  const liveRecord = record({ pid: live.pid!, processStart: processStartTime(live.pid!) ?? null });
  assert.equal(judgeInstallLock(bytesOf(liveRecord), 0).state, 'live');
  assert.deepEqual(judgeInstallLock(bytesOf(record({ pid: await deadPid() })), 0).state, 'stale');
  const reused = judgeInstallLock(bytesOf({ ...liveRecord, processStart: '1' }), 0);
  assert.deepEqual(reused, { state: 'stale', why: `pid ${live.pid} now belongs to another process` });
  if (bootId())
    assert.equal(
      judgeInstallLock(bytesOf({ ...liveRecord, bootId: '00000000-0000-0000-0000-000000000001' }), 0).state,
      'stale',
    );
  const otherBoot = '00000000-0000-0000-0000-000000000000';
  const foreign = record({ pid: await deadPid(), hostname: `not-${hostname()}`, bootId: otherBoot });
  assert.equal(judgeInstallLock(bytesOf(foreign), 0).state, 'live', 'a holder on another host cannot be checked');
  if (bootId()) {
    const renamed = record({ pid: await deadPid(), hostname: `not-${hostname()}` });
    assert.equal(judgeInstallLock(bytesOf(renamed), 0).state, 'stale', 'this boot, the hostname changed since');
  }
  assert.deepEqual(judgeInstallLock(bytesOf('{"half'), 0), { state: 'unreadable' });
  assert.deepEqual(judgeInstallLock(bytesOf('{"half'), UNPARSABLE_LOCK_GRACE_MS), {
    state: 'stale',
    why: 'it does not parse',
  });
});

test('taken, 0600, refused while held (same process), waited for, released', async (t) => {
  const dir = join(await tempDir(t, 'eg-lock-'), 'data');
  const lock = await acquireInstallLock(dir);
  const path = join(dir, INSTALL_LOCK_FILE);
  assert.equal((await stat(path)).mode & 0o777, 0o600);
  assert.equal(parseInstallLock(await readFile(path))?.nonce, lock.holder.nonce);
  await assert.rejects(acquireInstallLock(dir), (e) => {
    assert.ok(isEdgeguardError(e, 'EG_BUSY'));
    assert.equal(e.exitCode, 11);
    assert.equal(
      e.message,
      `another install is running (pid ${process.pid} since ${lock.holder.startedAt}); try again later.`,
    );
    return true;
  });
  const waiting = acquireInstallLock(dir, { waitMs: 60_000 });
  lock.release();
  const next = await waiting;
  next.release();
  assert.deepEqual(await readdir(dir), [], 'released: no lock, no temp file');
});

test('within a process: nested calls re-enter, a concurrent one is refused', async (t) => {
  const dir = await tempDir(t, 'eg-lock-');
  let finish!: () => void;
  const gate = new Promise<void>((resolve) => (finish = resolve));
  const outer = withInstallLock(dir, async () => {
    assert.equal(await withInstallLock(dir, async () => 'nested'), 'nested');
    await gate;
    return 'outer';
  });
  // Called from outside the holder's async context, as a second install in this process would be.
  await assert.rejects(
    withInstallLock(dir, async () => 'never'),
    (e) => isEdgeguardError(e, 'EG_BUSY'),
  );
  finish();
  assert.equal(await outer, 'outer');
  assert.deepEqual(await readdir(dir), []);
});

test('a lock whose holder is gone, or unparsable past the grace, is taken over; a live one refuses', async (t) => {
  const dir = await tempDir(t, 'eg-lock-');
  const path = join(dir, INSTALL_LOCK_FILE);
  // Leftovers of dead takers: a temp record and a stale claim; both go once the lock is taken.
  const dead = await deadPid();
  await writeFile(join(dir, `${INSTALL_LOCK_FILE}.tmp-${dead}-0a0b0c0d`), 'x');
  await writeFile(join(dir, `${INSTALL_LOCK_FILE}.claim-0123456789abcdef`), bytesOf(record({ pid: dead })));

  await writeFile(path, bytesOf(record({ pid: dead })));
  const taken = await acquireInstallLock(dir);
  assert.equal(parseInstallLock(await readFile(path))?.nonce, taken.holder.nonce);
  assert.deepEqual(await readdir(dir), [INSTALL_LOCK_FILE], 'leftovers removed');
  taken.release();

  await writeFile(path, '{"type":"edgeguard-inst');
  await assert.rejects(acquireInstallLock(dir), (e) => {
    assert.ok(isEdgeguardError(e, 'EG_BUSY'));
    assert.match(e.message, /unparsable locks count as stale after 5 s/);
    return true;
  });
  const past = new Date(Date.now() - UNPARSABLE_LOCK_GRACE_MS - 1000);
  await utimes(path, past, past);
  (await acquireInstallLock(dir)).release();

  const live = await liveProcess(t);
  const foreign = record({ pid: live.pid!, processStart: processStartTime(live.pid!) ?? null });
  await writeFile(path, bytesOf(foreign));
  await assert.rejects(acquireInstallLock(dir), (e) => {
    assert.ok(isEdgeguardError(e, 'EG_BUSY'));
    assert.match(e.message, new RegExp(`^another install is running \\(pid ${live.pid} since `));
    return true;
  });
  assert.deepEqual(parseInstallLock(await readFile(path)), foreign, 'a live holder’s lock is left alone');
});

interface Contender {
  child: ChildProcessWithoutNullStreams;
  answer: Promise<string>;
}

/** A lock-child.mjs process, loaded and waiting for "go". */
async function contender(t: { after(fn: () => void): void }, dir: string): Promise<Contender> {
  const child = spawn(process.execPath, [LOCK_CHILD, dir]);
  t.after(() => child.kill('SIGKILL'));
  let out = '';
  const lines: Array<(l: string) => void> = [];
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    let nl: number;
    while ((nl = out.indexOf('\n')) >= 0) {
      const line = out.slice(0, nl);
      out = out.slice(nl + 1);
      lines.shift()?.(line);
    }
  });
  const next = () => new Promise<string>((resolve) => lines.push(resolve));
  const ready = next();
  const answer = next();
  assert.equal(await ready, 'ready');
  return { child, answer };
}

test(
  'processes racing for a stale lock: exactly one takes it over, the others are refused',
  { timeout: 120_000 },
  async (t) => {
    await needDist();
    const dir = await tempDir(t, 'eg-lock-');
    await writeFile(join(dir, INSTALL_LOCK_FILE), bytesOf(record({ pid: await deadPid() })));
    const racers = await Promise.all(Array.from({ length: 6 }, () => contender(t, dir)));
    for (const r of racers) r.child.stdin.write('go\n');
    const answers = await Promise.all(racers.map((r) => r.answer));
    const winners = answers.filter((a) => a === 'held');
    assert.equal(winners.length, 1, answers.join('\n'));
    for (const a of answers.filter((x) => x !== 'held')) assert.match(a, /^busy EG_BUSY /);
    const winner = racers[answers.indexOf('held')]!;
    assert.equal(parseInstallLock(await readFile(join(dir, INSTALL_LOCK_FILE)))?.pid, winner.child.pid);
    const exited = new Promise((resolve) => winner.child.on('exit', resolve));
    winner.child.stdin.end();
    await exited;
    assert.deepEqual(await readdir(dir), [], 'the winner released; no claim or temp file is left');
  },
);

interface InstallRun {
  child: ChildProcessWithoutNullStreams;
  lines: string[];
  /** Resolves with the first line matching; rejects, with what the child printed, if it ends without one. */
  waitFor(re: RegExp): Promise<string>;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Resolves once process `pid` is stopped (state T in /proc/PID/stat). */
async function stopped(pid: number): Promise<void> {
  for (;;) {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('T')) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function installChild(args: object, hook: string): InstallRun {
  const child = spawn(process.execPath, [INSTALL_CHILD, JSON.stringify(args)], {
    env: { ...process.env, EDGEGUARD_INSTALL_STEP_HOOK: hook },
  });
  const lines: string[] = [];
  const waiters: Array<{ re: RegExp; resolve: (l: string) => void }> = [];
  let buf = '';
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      lines.push(line);
      for (const w of waiters.filter((x) => x.re.test(line))) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (code, signal) => {
      if (code !== 0 && signal === null) lines.push(`stderr: ${stderr}`);
      resolve({ code, signal });
    }),
  );
  return {
    child,
    lines,
    exit,
    waitFor: (re) => {
      const seen = lines.find((l) => re.test(l));
      if (seen !== undefined) return Promise.resolve(seen);
      // A child that ends without the line fails the test at once, saying what it printed.
      const ended = exit.then(({ code, signal }) => {
        const late = lines.find((l) => re.test(l));
        if (late !== undefined) return late;
        throw new Error(`child ended (${code ?? signal}) without ${re}:\n${lines.join('\n')}\nstderr: ${stderr}`);
      });
      return Promise.race([new Promise<string>((resolve) => waiters.push({ re, resolve })), ended]);
    },
  };
}

test(
  'two device updates racing on one data directory: one installs, the other is refused EG_BUSY',
  { timeout: 120_000 },
  async (t) => {
    await needDist();
    const f = await abFixture(t);
    const args = {
      dataDir: f.dataDir,
      deviceDir: f.deviceDir,
      wrappedKeyPath: f.wrappedKeyPath,
      publicKeyPath: f.keys.publicKeyPath,
      url: f.server.url,
      target: f.targets[1],
      waitForGo: true,
    };
    // The winner stops itself once staged, holding the lock, until this test resumes it.
    const runs = [installChild(args, 'stop:staged'), installChild(args, 'stop:staged')];
    t.after(() => runs.forEach((r) => r.child.kill('SIGKILL')));
    await Promise.all(runs.map((r) => r.waitFor(/^ready$/)));
    for (const r of runs) r.child.stdin.write('go\n');
    const loser = await Promise.race(runs.map((r, i) => r.exit.then(() => i)));
    const winner = runs[1 - loser]!;
    const lost = runs[loser]!;
    await winner.waitFor(/^install-step staged$/);
    const refused = JSON.parse((await lost.waitFor(/^outcome /)).slice('outcome '.length)) as {
      ok: boolean;
      error: { code: string; message: string };
    };
    assert.equal(refused.ok, false);
    assert.equal(refused.error.code, 'EG_BUSY');
    assert.match(refused.error.message, new RegExp(`another install is running \\(pid ${winner.child.pid} since `));
    assert.ok(!lost.lines.some((l) => l.startsWith('install-step')), 'the refused update did not start');
    // The line is written just before the child stops itself: a SIGCONT sent in between is lost.
    await stopped(winner.child.pid!);
    winner.child.kill('SIGCONT');
    const done = JSON.parse((await winner.waitFor(/^outcome /)).slice('outcome '.length)) as { ok: boolean };
    assert.equal(done.ok, true, winner.lines.join('\n'));
    assert.equal((await winner.exit).code, 0);
    assert.equal((await recoverSlots(f.dataDir)).active?.manifest.release.version, 1);
    assert.ok(!(await readdir(f.dataDir)).includes(INSTALL_LOCK_FILE), 'released');
  },
);

test(
  'an installer killed with SIGKILL holding the lock: the next update takes the stale lock over',
  { timeout: 120_000 },
  async (t) => {
    await needDist();
    const f = await abFixture(t);
    const run = installChild(
      {
        dataDir: f.dataDir,
        deviceDir: f.deviceDir,
        wrappedKeyPath: f.wrappedKeyPath,
        publicKeyPath: f.keys.publicKeyPath,
        url: f.server.url,
        target: f.targets[1],
      },
      'kill:placed',
    );
    assert.equal((await run.exit).signal, 'SIGKILL');
    const left = parseInstallLock(await readFile(join(f.dataDir, INSTALL_LOCK_FILE)));
    assert.equal(left?.pid, run.child.pid, 'the killed installer left its lock');
    const out = await updateDevice({
      install: {
        dataDir: f.dataDir,
        publicKeys: [f.keys.signer.publicKey],
        contentKey: { wrapped: f.wrappedKeyPath, device: f.deviceDir, store: f.store },
        floor: new SoftwareFloor(f.dataDir),
      },
      metadataDir: f.metadataDir,
      metadataBaseUrl: `${f.server.url}/metadata`,
      targetBaseUrl: `${f.server.url}/targets`,
      downloadDir: join(f.dataDir, 'download'),
      target: f.targets[2]!,
    });
    assert.equal(out.ok, true, JSON.stringify(out.error));
    assert.equal((await recoverSlots(f.dataDir)).active?.manifest.release.version, 2);
    assert.ok(!(await readdir(f.dataDir)).includes(INSTALL_LOCK_FILE));
  },
);
