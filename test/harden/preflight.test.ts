/**
 * `harden check` against directories laid out like a device's root: nft present or not, the ipset
 * modules loaded, built in, loadable or missing, K3s's policy controller on or off, secure boot.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import {
  EFI_GLOBAL_VARIABLE_GUID,
  checkHardening,
  kernelModuleAvailability,
  type HardeningReport,
} from '../../src/harden/index.ts';
import { tempDir } from '../helpers/workspace.ts';

const RELEASE = '6.1.0-edge';

async function put(root: string, path: string, content: string | Buffer, mode = 0o644): Promise<void> {
  const file = join(root, path);
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, content);
  await chmod(file, mode);
}

function efiVariable(value: number): Buffer {
  return Buffer.from([0x06, 0, 0, 0, value]);
}

/** A root where every check holds: nft, both modules loaded, secure boot on in user mode. */
async function hardenedRoot(t: Parameters<typeof tempDir>[0]): Promise<string> {
  const root = await tempDir(t, 'eg-root-');
  await put(root, 'usr/sbin/nft', '#!/bin/sh\n', 0o755);
  await put(root, 'proc/modules', 'xt_set 16384 0 - Live 0x0\nip_set 57344 1 xt_set, Live 0x0\n');
  await put(root, `sys/firmware/efi/efivars/SecureBoot-${EFI_GLOBAL_VARIABLE_GUID}`, efiVariable(1));
  await put(root, `sys/firmware/efi/efivars/SetupMode-${EFI_GLOBAL_VARIABLE_GUID}`, efiVariable(0));
  return root;
}

function finding(report: HardeningReport, check: string) {
  const f = report.findings.find((x) => x.check === check);
  assert.ok(f, `no ${check} finding`);
  return f;
}

test('a hardened root passes every check', async (t) => {
  const report = await checkHardening(await hardenedRoot(t));
  assert.equal(report.ok, true, JSON.stringify(report.findings));
  assert.deepEqual(
    report.findings.map((f) => f.check),
    ['nftables', 'ipset-modules', 'secure-boot'],
  );
});

test('nft missing, or present but not executable, warns', async (t) => {
  const root = await hardenedRoot(t);
  await chmod(join(root, 'usr/sbin/nft'), 0o644);
  const report = await checkHardening(root);
  assert.equal(report.ok, false);
  assert.equal(finding(report, 'nftables').status, 'warn');
  assert.match(finding(report, 'nftables').message, /install nftables/);
});

test('ipset modules: loaded through /sys/module, built in, loadable, missing', async (t) => {
  const root = await tempDir(t, 'eg-root-');
  await put(root, 'proc/sys/kernel/osrelease', `${RELEASE}\n`);
  await mkdir(join(root, 'sys/module/ip_set'), { recursive: true });
  await put(root, `lib/modules/${RELEASE}/modules.builtin`, 'kernel/net/netfilter/ipset/ip_set_hash_ip.ko\n');
  await put(
    root,
    `lib/modules/${RELEASE}/modules.dep`,
    'kernel/net/netfilter/xt_set.ko.xz: kernel/net/netfilter/ipset/ip_set.ko.xz\nkernel/net/netfilter/ipset/ip_set.ko.xz:\n',
  );
  assert.deepEqual(await kernelModuleAvailability(['ip_set', 'xt_set', 'ip-set-hash-ip', 'ip_set_hash_net'], root), {
    ip_set: 'loaded',
    xt_set: 'loadable',
    ip_set_hash_ip: 'builtin',
    ip_set_hash_net: 'missing',
  });
});

test('a kernel without xt_set warns that K3s enforces no NetworkPolicy', async (t) => {
  const root = await hardenedRoot(t);
  await put(root, 'proc/modules', 'ip_set 57344 0 - Live 0x0\n');
  const report = await checkHardening(root);
  const f = finding(report, 'ipset-modules');
  assert.equal(f.status, 'warn');
  assert.match(f.message, /xt_set not found.*enforces no NetworkPolicy/);
  assert.deepEqual(f.details, { modules: { ip_set: 'loaded', xt_set: 'missing' } });
  assert.equal(report.ok, false);
});

test('K3s with disable-network-policy warns; with the controller on it is ok', async (t) => {
  const root = await hardenedRoot(t);
  await put(root, 'etc/rancher/k3s/config.yaml', 'write-kubeconfig-mode: "0600"\ndisable-network-policy: true\n');
  assert.equal(finding(await checkHardening(root), 'k3s-network-policy').status, 'warn');
  await put(root, 'etc/rancher/k3s/config.yaml', 'write-kubeconfig-mode: "0600"\n');
  const report = await checkHardening(root);
  assert.equal(finding(report, 'k3s-network-policy').status, 'ok');
  assert.equal(report.ok, true);
  await put(root, 'etc/rancher/k3s/config.yaml', 'a: [\n');
  assert.equal(finding(await checkHardening(root), 'k3s-network-policy').status, 'warn');
});

test('secure boot off, setup mode, no UEFI, malformed variable: each warns with what to do', async (t) => {
  const cases: Array<[number, number, RegExp]> = [
    [0, 0, /secure boot is off/],
    [1, 1, /setup mode/],
    [7, 0, /must be 0 or 1/],
  ];
  for (const [secureBoot, setupMode, message] of cases) {
    const root = await hardenedRoot(t);
    await put(root, `sys/firmware/efi/efivars/SecureBoot-${EFI_GLOBAL_VARIABLE_GUID}`, efiVariable(secureBoot));
    await put(root, `sys/firmware/efi/efivars/SetupMode-${EFI_GLOBAL_VARIABLE_GUID}`, efiVariable(setupMode));
    const f = finding(await checkHardening(root), 'secure-boot');
    assert.equal(f.status, 'warn');
    assert.match(f.message, message);
  }
  const bare = await tempDir(t, 'eg-root-');
  assert.match(finding(await checkHardening(bare), 'secure-boot').message, /did not boot through UEFI/);
});
