/** `edgeguard harden egress|check` as an operator runs them: formats, files, JSON, exit codes. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { EFI_GLOBAL_VARIABLE_GUID } from '../../src/harden/index.ts';
import { runCli } from '../helpers/cli.ts';
import { tempDir } from '../helpers/workspace.ts';

const AGENT_YAML = `trust: { publicKeys: [publisher.pub] }
contentKey: { file: model.key }
models: { primary: model.egm }
review: { enabled: false }
upload: { server: "https://192.0.2.10:8443", ca: ca.pem, cert: device.crt, key: device.key }
`;

async function agentYaml(t: Parameters<typeof tempDir>[0], egress: string): Promise<string> {
  const file = join(await tempDir(t), 'agent.yaml');
  await writeFile(file, AGENT_YAML + egress);
  return file;
}

test('harden egress: each format to stdout, the control plane taken from upload.server', async (t) => {
  const config = await agentYaml(t, 'egress: { dns: [192.0.2.53] }\n');
  const nft = await runCli(['harden', 'egress', '--config', config, '--format', 'nftables']);
  assert.equal(nft.code, 0, nft.stderr);
  assert.match(nft.stdout, /ip daddr \{ 192\.0\.2\.10 \} tcp dport 8443 counter accept/);
  const np = await runCli(['harden', 'egress', '--config', config, '--format', 'networkpolicy', '--namespace', 'edge']);
  assert.equal(np.code, 0, np.stderr);
  assert.equal(parseYaml(np.stdout).metadata.namespace, 'edge');
  const sd = await runCli(['harden', 'egress', '--config', config, '--format', 'systemd']);
  assert.match(sd.stdout, /^IPAddressAllow=192\.0\.2\.10$/m);
});

test('harden egress -o FILE --json: writes the file once, then needs --force', async (t) => {
  const config = await agentYaml(t, 'egress: { dns: [192.0.2.53] }\n');
  const out = join(await tempDir(t), 'egress.nft');
  const args = ['harden', 'egress', '--config', config, '--format', 'nftables', '-o', out, '--json'];
  const first = await runCli(args);
  assert.equal(first.code, 0, first.stderr);
  const result = JSON.parse(first.stdout);
  assert.equal(result.out, out);
  assert.equal(result.rules.length, 3);
  assert.match(await readFile(out, 'utf8'), /policy drop;/);
  const again = await runCli(args);
  assert.equal(again.code, 2);
  assert.equal(JSON.parse(again.stdout).error.code, 'EG_EXISTS');
  assert.equal((await runCli([...args, '--force'])).code, 0);
});

test('harden egress refuses a config without egress, with a bad egress section, or a bad format', async (t) => {
  const none = await runCli(['harden', 'egress', '--config', await agentYaml(t, ''), '--format', 'nftables']);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /^EG_CONFIG: .*has no egress section/);
  const typo = await agentYaml(t, 'egress: { dns: [192.0.2.53], resolvers: [192.0.2.54] }\n');
  const bad = await runCli(['harden', 'egress', '--config', typo, '--format', 'nftables']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^EG_CONFIG: .* invalid at egress/);
  const format = await runCli(['harden', 'egress', '--config', typo, '--format', 'iptables']);
  assert.equal(format.code, 2);
  assert.match(format.stderr, /^EG_USAGE: .*nftables, networkpolicy, systemd/);
});

test('harden check --root: warnings exit 9 (EG_PREFLIGHT); a hardened root exits 0', async (t) => {
  const root = await tempDir(t, 'eg-root-');
  const bare = await runCli(['harden', 'check', '--root', root, '--json']);
  assert.equal(bare.code, 9);
  const report = JSON.parse(bare.stdout);
  assert.equal(report.ok, false);
  assert.deepEqual(
    report.findings.map((f: { check: string; status: string }) => `${f.check}:${f.status}`),
    ['nftables:warn', 'ipset-modules:warn', 'secure-boot:warn'],
  );
  await mkdir(join(root, 'usr/sbin'), { recursive: true });
  await writeFile(join(root, 'usr/sbin/nft'), '#!/bin/sh\n');
  await chmod(join(root, 'usr/sbin/nft'), 0o755);
  await mkdir(join(root, 'proc'));
  await writeFile(join(root, 'proc/modules'), 'xt_set 16384 0 - Live 0x0\nip_set 57344 1 xt_set, Live 0x0\n');
  const efivars = join(root, 'sys/firmware/efi/efivars');
  await mkdir(efivars, { recursive: true });
  await writeFile(join(efivars, `SecureBoot-${EFI_GLOBAL_VARIABLE_GUID}`), Buffer.from([6, 0, 0, 0, 1]));
  await writeFile(join(efivars, `SetupMode-${EFI_GLOBAL_VARIABLE_GUID}`), Buffer.from([6, 0, 0, 0, 0]));
  const hardened = await runCli(['harden', 'check', '--root', root]);
  assert.equal(hardened.code, 0, hardened.stdout);
  assert.match(hardened.stdout, /^ok {3}secure-boot: secure boot is on/m);
});
