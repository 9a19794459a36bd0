/**
 * The hardened units in deploy/systemd: `systemd-analyze security --offline=true` scores each one,
 * and the score may not get worse than the one recorded in deploy/systemd/exposure.json (nor pass
 * 2.0, systemd's "OK"); the settings the threat model relies on are checked by name.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../helpers/workspace.ts';

const run = promisify(execFile);
const UNITS_DIR = join(REPO_ROOT, 'deploy', 'systemd');
const UNITS = ['edgeguard-agent.service', 'edgeguard-server.service'];
const OK_EXPOSURE = 2.0;

const SKIP: string | false =
  process.env.CI !== 'true' && spawnSync('systemd-analyze', ['--version'], { stdio: 'ignore' }).error
    ? 'systemd-analyze not installed (apt-get install systemd): unit scores not checked'
    : false;

async function exposure(unit: string): Promise<number> {
  const { stdout } = await run('systemd-analyze', ['security', '--offline=true', '--no-pager', unit], {
    cwd: UNITS_DIR,
  });
  const match = /Overall exposure level for \S+: (\d+\.\d+) /.exec(stdout);
  assert.ok(match, `no overall exposure in: ${stdout.slice(-300)}`);
  return Number(match[1]);
}

/** Every `Key=value` line of a unit file, in order (keys may repeat). */
async function settings(unit: string): Promise<Array<[string, string]>> {
  const text = await readFile(join(UNITS_DIR, unit), 'utf8');
  return text
    .split('\n')
    .filter((line) => /^[A-Za-z]+=/.test(line))
    .map((line) => {
      const at = line.indexOf('=');
      return [line.slice(0, at), line.slice(at + 1)];
    });
}

test('each unit scores no worse than recorded, and at most 2.0 ("OK")', { skip: SKIP }, async () => {
  const recorded = JSON.parse(await readFile(join(UNITS_DIR, 'exposure.json'), 'utf8')) as Record<string, number>;
  for (const unit of UNITS) {
    const score = await exposure(unit);
    assert.ok(score <= recorded[unit]!, `${unit}: exposure ${score}, recorded ${recorded[unit]}`);
    assert.ok(score <= OK_EXPOSURE, `${unit}: exposure ${score}`);
  }
});

test('both units: own user, read-only system, private tmp, no privileges, no capabilities, a syscall filter', async () => {
  for (const unit of UNITS) {
    const s = new Map(await settings(unit));
    for (const [key, value] of [
      ['ProtectSystem', 'strict'],
      ['ProtectHome', 'yes'],
      ['PrivateTmp', 'yes'],
      ['NoNewPrivileges', 'yes'],
      ['CapabilityBoundingSet', ''],
      ['AmbientCapabilities', ''],
      ['RestrictAddressFamilies', 'AF_UNIX AF_INET AF_INET6'],
      ['SystemCallArchitectures', 'native'],
      ['UMask', '0077'],
    ])
      assert.equal(s.get(key!), value, `${unit}: ${key}`);
    assert.match(s.get('User') ?? '', /^edgeguard-/, `${unit}: a dedicated user`);
    assert.match(s.get('ReadWritePaths') ?? '', /^\/var\/lib\/edgeguard-/, `${unit}: writes only its state`);
    assert.equal(s.get('StateDirectoryMode'), '0700');
    assert.ok(
      (await settings(unit)).some(([k, v]) => k === 'SystemCallFilter' && v.startsWith('~@privileged')),
      `${unit}: privileged system calls filtered`,
    );
  }
});

test('the agent: only /dev/tpmrm0 among devices, loopback-only network until the egress drop-in', async () => {
  const all = await settings('edgeguard-agent.service');
  const values = (key: string) => all.filter(([k]) => k === key).map(([, v]) => v);
  assert.deepEqual(values('DevicePolicy'), ['closed']);
  assert.deepEqual(values('DeviceAllow'), ['/dev/tpmrm0 rw']);
  assert.deepEqual(values('Group'), ['tss']);
  assert.deepEqual(values('IPAddressDeny'), ['any']);
  assert.deepEqual(values('IPAddressAllow'), ['localhost']);
  const server = new Map(await settings('edgeguard-server.service'));
  assert.equal(server.get('PrivateDevices'), 'yes');
});
