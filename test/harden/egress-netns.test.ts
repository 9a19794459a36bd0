/**
 * The generated nftables rule set, applied for real inside a "device" network namespace joined by
 * a veth pair to a "server" namespace that runs HTTPS servers (a certificate from a fleet CA made for
the test, verified by the probe) and a DNS responder. Before the rules
 * every probe answers (so a later failure is the rules' doing); after them the control plane and
 * the listed resolver answer, and another address, another port and another resolver are dropped
 * and counted.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { egressConfigSchema, planEgress, renderNftables, NFT_DROP_COUNTER, NFT_TABLE } from '../../src/harden/index.ts';
import { FleetCa } from '../../src/pki/index.ts';
import { NETNS_SKIP, createNetnsPair, type NetnsPair } from '../helpers/netns.ts';
import { CLI, REPO_ROOT, tempDir } from '../helpers/workspace.ts';

const DEVICE = '10.77.0.1';
const CONTROL_PLANE = '10.77.0.2';
const OTHER_HOST = '10.77.0.3';
const RESOLVER = '10.77.0.53';
const OTHER_RESOLVER = '10.77.0.54';
const ALLOWED_PORT = 8443;
const OTHER_PORT = 9443;

interface TlsFiles {
  dir: string;
  key: string;
  cert: string;
  ca: string;
}

/** A throwaway fleet CA and a server certificate for the peer's addresses, in a temp directory. */
async function makeTls(): Promise<TlsFiles> {
  const dir = await mkdtemp(join(tmpdir(), 'eg-netns-tls-'));
  const ca = await FleetCa.create(dir, 'netns test passphrase');
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const issued = await ca.issueServerCertificate({
    hostnames: [CONTROL_PLANE, OTHER_HOST],
    publicKey: pair.publicKey.export({ type: 'spki', format: 'der' }),
  });
  const files = { dir, key: join(dir, 'server.key'), cert: join(dir, 'server.crt'), ca: join(dir, 'root.pem') };
  await writeFile(files.key, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  await writeFile(files.cert, issued.chainPem);
  await writeFile(files.ca, ca.rootPem);
  return files;
}

function probes(tls: TlsFiles) {
  return [
    { kind: 'https', host: CONTROL_PLANE, port: ALLOWED_PORT, ca: tls.ca },
    { kind: 'https', host: CONTROL_PLANE, port: OTHER_PORT, ca: tls.ca },
    { kind: 'https', host: OTHER_HOST, port: ALLOWED_PORT, ca: tls.ca },
    { kind: 'dns', server: RESOLVER, name: 'cp.edgeguard.test' },
    { kind: 'dns', server: OTHER_RESOLVER, name: 'cp.edgeguard.test' },
  ];
}

interface ProbeResult {
  ok: boolean;
  detail: string;
}

interface NftObject {
  counter?: { name: string; packets: number };
  rule?: { comment?: string; expr: Array<{ counter?: { packets: number } }> };
}

async function startPeer(net: NetnsPair, tls: TlsFiles): Promise<ChildProcess> {
  const config = {
    answer: CONTROL_PLANE,
    resolvers: [RESOLVER, OTHER_RESOLVER],
    ports: [ALLOWED_PORT, OTHER_PORT],
    key: tls.key,
    cert: tls.cert,
  };
  const argv = [
    process.execPath,
    '--import',
    'tsx',
    join(REPO_ROOT, 'test/harden/netns-peer.ts'),
    JSON.stringify(config),
  ];
  const peer = spawn('ip', ['netns', 'exec', net.names.server, ...argv], {
    cwd: REPO_ROOT,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: peer.stdout! });
  const exited = once(peer, 'exit').then(([code]) => {
    throw new Error(`the test peer exited (${code}) before it was ready`);
  });
  await Promise.race([once(lines, 'line'), exited]);
  return peer;
}

async function probe(net: NetnsPair, tls: TlsFiles): Promise<ProbeResult[]> {
  const argv = [
    process.execPath,
    '--import',
    'tsx',
    join(REPO_ROOT, 'test/harden/netns-probe.ts'),
    JSON.stringify(probes(tls)),
  ];
  const { stdout } = await net.exec('device', argv);
  return JSON.parse(stdout) as ProbeResult[];
}

async function ruleset(net: NetnsPair): Promise<NftObject[]> {
  const { stdout } = await net.exec('device', ['nft', '-j', 'list', 'table', 'inet', NFT_TABLE]);
  return (JSON.parse(stdout) as { nftables: NftObject[] }).nftables;
}

/** `edgeguard harden check` run inside the device namespace: its finding on the loaded rules. */
async function egressRulesFinding(net: NetnsPair): Promise<{ status: string; message: string }> {
  const { stdout } = await net
    .exec('device', [process.execPath, CLI, 'harden', 'check', '--json'])
    .catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }));
  const report = JSON.parse(stdout) as { findings: Array<{ check: string; status: string; message: string }> };
  const finding = report.findings.find((f) => f.check === 'egress-rules');
  assert.ok(finding, stdout);
  return finding;
}

function dropped(objects: NftObject[]): number {
  const counter = objects.find((o) => o.counter?.name === NFT_DROP_COUNTER)?.counter;
  assert.ok(counter, 'the drop counter exists');
  return counter.packets;
}

function accepted(objects: NftObject[], commentPrefix: string): number {
  const rule = objects.find((o) => o.rule?.comment?.startsWith(commentPrefix))?.rule;
  assert.ok(rule, `a rule commented "${commentPrefix}..."`);
  return rule.expr.find((e) => e.counter)?.counter?.packets ?? -1;
}

describe('egress rule set in a network namespace', { skip: NETNS_SKIP, timeout: 120_000 }, () => {
  let net: NetnsPair | undefined;
  let peer: ChildProcess | undefined;
  let tls: TlsFiles | undefined;

  before(async () => {
    tls = await makeTls();
    net = await createNetnsPair({
      device: DEVICE,
      server: [CONTROL_PLANE, OTHER_HOST, RESOLVER, OTHER_RESOLVER],
      prefix: 24,
    });
    peer = await startPeer(net, tls);
  });

  after(async () => {
    if (peer && peer.exitCode === null) {
      const exit = once(peer, 'exit');
      peer.stdin?.end();
      await exit;
    }
    await net?.remove();
    if (tls) await rm(tls.dir, { recursive: true, force: true });
  });

  test('without the rules every probe answers', async () => {
    const results = await probe(net!, tls!);
    assert.deepEqual(
      results.map((r) => r.ok),
      [true, true, true, true, true],
      JSON.stringify(results),
    );
    assert.equal(results[3]!.detail, CONTROL_PLANE);
    assert.equal((await egressRulesFinding(net!)).status, 'warn', 'harden check sees no rule set');
  });

  test('with the rules: the control plane and the listed resolver answer; the rest is dropped and counted', async (t) => {
    const egress = egressConfigSchema.parse({
      controlPlane: `https://${CONTROL_PLANE}:${ALLOWED_PORT}`,
      dns: [RESOLVER],
    });
    const file = join(await tempDir(t), 'egress.nft');
    await writeFile(file, renderNftables(await planEgress({ egress })));
    await net!.exec('device', ['nft', '-f', file]);
    const before = await ruleset(net!);
    assert.equal(dropped(before), 0);

    const results = await probe(net!, tls!);
    const [controlPlane, otherPort, otherHost, resolver, otherResolver] = results;
    assert.match(controlPlane!.detail, /^200 edgeguard test peer on 8443$/, JSON.stringify(results));
    assert.equal(resolver!.detail, CONTROL_PLANE, JSON.stringify(results));
    for (const r of [otherPort, otherHost, otherResolver]) assert.equal(r!.ok, false, JSON.stringify(r));

    const after = await ruleset(net!);
    // At least one packet for each of the three refused attempts (SYN retries and DNS only add).
    assert.ok(dropped(after) >= 3, `dropped ${dropped(after)} packets`);
    assert.ok(accepted(after, 'control-plane') > 0, 'the control-plane rule counted the allowed connection');
    assert.ok(accepted(after, 'dns') > 0, 'the DNS rule counted the allowed query');
    const finding = await egressRulesFinding(net!);
    assert.equal(finding.status, 'ok', finding.message);
    const seen = /loaded \((\d+) packets dropped/.exec(finding.message);
    assert.ok(seen && Number(seen[1]) >= 3, finding.message);

    // Loading the file again replaces the table (fresh counters), it does not stack a second one.
    await net!.exec('device', ['nft', '-f', file]);
    assert.equal(dropped(await ruleset(net!)), 0);
    const { stdout } = await net!.exec('device', ['nft', 'list', 'tables']);
    assert.deepEqual(stdout.trim().split('\n'), [`table inet ${NFT_TABLE}`]);
  });
});
