/**
 * From the egress description to the plan and the three renderings. The rule set's behaviour is
 * tested for real in egress-netns.test.ts; here: what goes in, what stays out, and that nft(8)
 * accepts the syntax.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { isEdgeguardError } from '../../src/errors/index.ts';
import {
  AGENT_POD_LABELS,
  egressConfigSchema,
  planEgress,
  renderNetworkPolicy,
  renderNftables,
  renderSystemdDropIn,
  type EgressPlan,
} from '../../src/harden/index.ts';
import { tempDir } from '../helpers/workspace.ts';

const run = promisify(execFile);

const EGRESS = egressConfigSchema.parse({
  controlPlane: 'https://192.0.2.10:8443',
  dns: ['192.0.2.53', '2001:db8::53'],
  ntp: ['192.0.2.123'],
  endpoints: [
    { host: '198.51.100.0/24', port: 9000, protocol: 'udp' },
    { host: '192.0.2.20', port: 6443 },
  ],
});

async function nftAvailable(): Promise<boolean> {
  return run('nft', ['--version']).then(
    () => true,
    () => false,
  );
}

test('the plan: DNS over UDP and TCP, NTP for the host only, control plane with its port, endpoints', async () => {
  const plan = await planEgress({ egress: EGRESS });
  const summary = plan.rules.map((r) => [r.purpose, r.protocol, r.port, [...r.ipv4, ...r.ipv6].join(' '), r.agent]);
  assert.deepEqual(summary, [
    ['dns', 'udp', 53, '192.0.2.53 2001:db8::53', true],
    ['dns', 'tcp', 53, '192.0.2.53 2001:db8::53', true],
    ['ntp', 'udp', 123, '192.0.2.123', false],
    ['control-plane', 'tcp', 8443, '192.0.2.10', true],
    ['endpoint', 'udp', 9000, '198.51.100.0/24', true],
    ['endpoint', 'tcp', 6443, '192.0.2.20', true],
  ]);
});

test('names are resolved by the system resolver when the plan is made', async () => {
  const egress = egressConfigSchema.parse({ controlPlane: 'https://localhost:8443', dns: ['192.0.2.53'] });
  const cp = (await planEgress({ egress })).rules.find((r) => r.purpose === 'control-plane');
  assert.ok(cp, 'a control-plane rule');
  assert.ok(cp.ipv4.includes('127.0.0.1'), JSON.stringify(cp));
  assert.ok(
    cp.ipv6.every((a) => a === '::1'),
    JSON.stringify(cp),
  );
});

test('the control plane defaults to upload.server and to port 443', async () => {
  const egress = egressConfigSchema.parse({ dns: ['192.0.2.53'] });
  const plan = await planEgress({ egress, uploadServer: 'https://[2001:db8::10]' });
  const cp = plan.rules.find((r) => r.purpose === 'control-plane');
  assert.deepEqual(cp && [cp.port, cp.ipv6], [443, ['2001:db8::10']]);
});

test('refused: no control plane, a plain-http one, names without a resolver, a name that does not resolve', async () => {
  const noDns = egressConfigSchema.parse({ controlPlane: 'https://cp.example.com' });
  const cases: Array<[Parameters<typeof planEgress>[0], RegExp]> = [
    [{ egress: egressConfigSchema.parse({ dns: ['192.0.2.53'] }) }, /set egress.controlPlane/],
    [{ egress: egressConfigSchema.parse({}), uploadServer: 'http://192.0.2.10' }, /not https/],
    [{ egress: noDns }, /lists no DNS resolver/],
    [
      { egress: egressConfigSchema.parse({ controlPlane: 'https://nothing.invalid', dns: ['192.0.2.53'] }) },
      /could not resolve nothing.invalid/,
    ],
  ];
  for (const [source, message] of cases)
    await assert.rejects(planEgress(source), (e) => isEdgeguardError(e, 'EG_CONFIG') && message.test(e.message));
});

test('the schema refuses unknown keys, resolver names, bad ports and non-https URLs', () => {
  const bad = [
    { dns: ['dns.example.com'] },
    { controlPlane: 'http://192.0.2.10' },
    { endpoints: [{ host: '192.0.2.1', port: 0 }] },
    { endpoints: [{ host: '192.0.2.1', port: 443, protocol: 'sctp' }] },
    { endpoints: [{ host: 'a b', port: 443 }] },
    { ntp: ['192.0.2.1/33'] },
    { proxy: 'x' },
  ];
  for (const value of bad) assert.equal(egressConfigSchema.safeParse(value).success, false, JSON.stringify(value));
});

test('nftables: drop policy, loopback, established, every destination with a counter, logged counted drop', async (t) => {
  const text = renderNftables(await planEgress({ egress: EGRESS }));
  const lines = text.split('\n').map((l) => l.trim());
  for (const expected of [
    'type filter hook output priority filter; policy drop;',
    'oifname "lo" accept',
    'ct state established,related accept',
    'ip daddr { 192.0.2.53 } udp dport 53 counter accept comment "dns 192.0.2.53, 2001:db8::53"',
    'ip6 daddr { 2001:db8::53 } tcp dport 53 counter accept comment "dns 192.0.2.53, 2001:db8::53"',
    'ip daddr { 192.0.2.123 } udp dport 123 counter accept comment "ntp 192.0.2.123"',
    'ip daddr { 192.0.2.10 } tcp dport 8443 counter accept comment "control-plane https://192.0.2.10:8443"',
    'ip daddr { 198.51.100.0/24 } udp dport 9000 counter accept comment "endpoint 198.51.100.0/24"',
    'limit rate 10/second burst 20 packets log prefix "edgeguard egress drop: " level warn',
    'counter name "egress_dropped" drop',
  ])
    assert.ok(lines.includes(expected), `missing: ${expected}`);
  assert.equal(lines.at(-4), 'counter name "egress_dropped" drop', 'the counted drop is the last rule');
  if (!(await nftAvailable())) return t.skip('nft is not installed: the syntax check needs it');
  const file = join(await tempDir(t), 'egress.nft');
  await writeFile(file, text);
  await run('nft', ['-c', '-f', file]);
});

test('NetworkPolicy: cluster DNS first, resolvers on 53, agent destinations only (no NTP)', async () => {
  const plan: EgressPlan = await planEgress({ egress: EGRESS });
  const policy = parseYaml(renderNetworkPolicy(plan, { namespace: 'edge', podLabels: AGENT_POD_LABELS }));
  assert.equal(policy.kind, 'NetworkPolicy');
  assert.equal(policy.metadata.namespace, 'edge');
  assert.deepEqual(policy.spec.podSelector.matchLabels, AGENT_POD_LABELS);
  assert.deepEqual(policy.spec.policyTypes, ['Egress']);
  const [dns, ...rest] = policy.spec.egress;
  assert.deepEqual(dns.to[0].podSelector.matchLabels, { 'k8s-app': 'kube-dns' });
  assert.deepEqual(dns.ports, [
    { protocol: 'UDP', port: 53 },
    { protocol: 'TCP', port: 53 },
  ]);
  const flat = rest.map(
    (r: { to: Array<{ ipBlock: { cidr: string } }>; ports: Array<{ protocol: string; port: number }> }) =>
      [r.to.map((p) => p.ipBlock.cidr).join(' '), r.ports[0]!.protocol, r.ports[0]!.port].join(' '),
  );
  assert.deepEqual(flat, [
    '192.0.2.53/32 2001:db8::53/128 UDP 53',
    '192.0.2.53/32 2001:db8::53/128 TCP 53',
    '192.0.2.10/32 TCP 8443',
    '198.51.100.0/24 UDP 9000',
    '192.0.2.20/32 TCP 6443',
  ]);
});

test('systemd drop-in: deny any, allow loopback and the agent destinations, no NTP', async () => {
  const text = renderSystemdDropIn(await planEgress({ egress: EGRESS }));
  const settings = text.split('\n').filter((l) => l && !l.startsWith('#'));
  assert.deepEqual(settings, [
    '[Service]',
    'IPAddressDeny=any',
    'IPAddressAllow=localhost',
    'IPAddressAllow=192.0.2.10',
    'IPAddressAllow=192.0.2.20',
    'IPAddressAllow=192.0.2.53',
    'IPAddressAllow=198.51.100.0/24',
    'IPAddressAllow=2001:db8::53',
    'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6',
  ]);
});
