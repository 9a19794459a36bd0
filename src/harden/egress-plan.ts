/**
 * Turns the egress description into a plan: every allowed destination as addresses, protocol and
 * port. Names are resolved once, here, so the generated rules pin the addresses they had at
 * generation time (regenerate when they change); a name that does not resolve is an error, never a
 * silently missing rule.
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { EdgeguardError } from '../errors/index.ts';
import type { EgressConfig } from './egress-config.ts';

export type EgressPurpose = 'dns' | 'ntp' | 'control-plane' | 'endpoint';

export interface EgressRule {
  purpose: EgressPurpose;
  /** The destination as the operator wrote it (a URL, a name, addresses). */
  target: string;
  protocol: 'tcp' | 'udp';
  port: number;
  /** Destinations in CIDR form; a single address is written without a prefix length. */
  ipv4: string[];
  ipv6: string[];
  /** False for what only the host needs (NTP): left out of the agent's own policies. */
  agent: boolean;
}

export interface EgressPlan {
  rules: EgressRule[];
}

export interface EgressSource {
  egress: EgressConfig;
  /** upload.server of agent.yaml: the control plane when egress.controlPlane is not given. */
  uploadServer?: string | undefined;
}

const DNS_PORT = 53;
const NTP_PORT = 123;
const HTTPS_PORT = 443;

/** Split literal addresses and CIDR blocks by family; names are resolved through the system resolver. */
async function addressesOf(hosts: string[]): Promise<{ ipv4: string[]; ipv6: string[] }> {
  const ipv4 = new Set<string>();
  const ipv6 = new Set<string>();
  for (const host of hosts) {
    const address = host.split('/')[0]!;
    const family = isIP(address);
    if (family !== 0) {
      (family === 4 ? ipv4 : ipv6).add(host);
      continue;
    }
    for (const a of await resolveName(host)) (a.family === 4 ? ipv4 : ipv6).add(a.address);
  }
  return { ipv4: [...ipv4].sort(), ipv6: [...ipv6].sort() };
}

async function resolveName(name: string): Promise<Array<{ address: string; family: number }>> {
  try {
    return await lookup(name, { all: true, verbatim: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'unknown error';
    throw new EdgeguardError(
      'EG_CONFIG',
      `could not resolve ${name} (${code}) to generate the egress rules; fix the name or list its address instead.`,
      { cause: e },
    );
  }
}

function controlPlaneUrl(source: EgressSource): URL {
  const text = source.egress.controlPlane ?? source.uploadServer;
  if (!text)
    throw new EdgeguardError(
      'EG_CONFIG',
      'the egress rules need the control plane: set egress.controlPlane to its https URL (or configure upload.server).',
    );
  const url = new URL(text);
  if (url.protocol !== 'https:')
    throw new EdgeguardError('EG_CONFIG', `the control plane URL ${text} is not https; the device only talks TLS.`);
  return url;
}

function stripBrackets(hostname: string): string {
  return hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
}

function needsDns(source: EgressSource, controlPlaneHost: string): boolean {
  const hosts = [controlPlaneHost, ...source.egress.ntp, ...source.egress.endpoints.map((e) => e.host)];
  return hosts.some((h) => isIP(h.split('/')[0]!) === 0);
}

export async function planEgress(source: EgressSource): Promise<EgressPlan> {
  const { egress } = source;
  const url = controlPlaneUrl(source);
  const controlPlaneHost = stripBrackets(url.hostname);
  if (egress.dns.length === 0 && needsDns(source, controlPlaneHost))
    throw new EdgeguardError(
      'EG_CONFIG',
      'egress names hosts but lists no DNS resolver: add egress.dns (resolver addresses), or the device cannot resolve them once the rules apply.',
    );
  const rules: EgressRule[] = [];
  if (egress.dns.length) {
    const resolvers = await addressesOf(egress.dns);
    const target = egress.dns.join(', ');
    for (const protocol of ['udp', 'tcp'] as const)
      rules.push({ purpose: 'dns', target, protocol, port: DNS_PORT, ...resolvers, agent: true });
  }
  if (egress.ntp.length) {
    const servers = await addressesOf(egress.ntp);
    rules.push({
      purpose: 'ntp',
      target: egress.ntp.join(', '),
      protocol: 'udp',
      port: NTP_PORT,
      ...servers,
      agent: false,
    });
  }
  rules.push({
    purpose: 'control-plane',
    target: url.origin,
    protocol: 'tcp',
    port: url.port ? Number(url.port) : HTTPS_PORT,
    ...(await addressesOf([controlPlaneHost])),
    agent: true,
  });
  for (const e of egress.endpoints) {
    const addresses = await addressesOf([e.host]);
    rules.push({ purpose: 'endpoint', target: e.host, protocol: e.protocol, port: e.port, ...addresses, agent: true });
  }
  return { rules };
}
