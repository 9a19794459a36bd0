/**
 * EG-03 (egress restricted, read from the running kernel's nft rule set, not from the rules file)
 * and EG-04 (the device reaches the control plane only over mutual TLS under the pinned fleet CA).
 */
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { FLEET_FILES, FLEET_SUBDIR } from '../fleet/index.ts';
import { listEgressTable, NFT_TABLE } from '../harden/index.ts';
import { FILE_CAPS, isEdgeguardError, readBoundedText } from '../errors/index.ts';
import { sha256Hex } from './evidence.ts';
import { combine, type CheckDefinition, type ChecklistTarget, type Evidence } from './types.ts';

/**
 * The digest of the rules, not of the traffic: counters' packets and bytes are zeroed so the same
 * rule set gives the same digest from one run to the next (listing already parsed by the harden module).
 */
function rulesetDigest(listing: string): string {
  const zeroCounters = (_key: string, value: unknown) =>
    value && typeof value === 'object' && 'packets' in value && 'bytes' in value
      ? { ...value, packets: 0, bytes: 0 }
      : value;
  return sha256Hex(JSON.stringify(JSON.parse(listing, zeroCounters)));
}

export const egressRestricted: CheckDefinition = {
  id: 'EG-03',
  title: 'network egress restricted',
  audit: `agent.yaml's egress section, and the live rule set: nft -j list table inet ${NFT_TABLE} (output hook, policy drop)`,
  expected: `table inet ${NFT_TABLE} loaded in the running kernel with an output chain whose policy is drop`,
  remediation:
    'edgeguard harden egress --config agent.yaml --format nftables -o egress.nft; nft -f egress.nft (and load it at boot)',
  async run(target) {
    const evidence: Evidence[] = [];
    if (target.config.egress === undefined)
      return {
        status: 'FAIL',
        actual: 'agent.yaml has no egress section: nothing says what the device may reach',
        evidence,
      };
    evidence.push({ name: 'egress configuration sha256', value: sha256Hex(JSON.stringify(target.config.egress)) });
    if (!target.nft)
      return { status: 'NOT-AVAILABLE', actual: 'nft is not installed: no rule set can be enforced or read', evidence };
    try {
      const { state, listing } = await listEgressTable(target.nft);
      if (listing)
        evidence.push({
          name: 'live rule set sha256 (nft -j list table, counters zeroed)',
          value: rulesetDigest(listing),
        });
      if (state.status === 'loaded')
        return {
          status: 'PASS',
          actual: `loaded, policy drop, ${state.droppedPackets} packets dropped so far`,
          evidence,
        };
      if (state.status === 'absent')
        return { status: 'FAIL', actual: `table inet ${NFT_TABLE} is not loaded`, evidence };
      if (state.status === 'not-enforcing') return { status: 'FAIL', actual: state.reason, evidence };
      return { status: 'WARN', actual: state.reason, evidence };
    } catch (e) {
      if (!isEdgeguardError(e)) throw e;
      return { status: 'WARN', actual: `the live rule set cannot be read: ${e.message}`, evidence };
    }
  },
};

interface MtlsFiles {
  server?: string;
  ca: string;
  cert: string;
}

async function mtlsFiles(target: ChecklistTarget): Promise<MtlsFiles | undefined> {
  const upload = target.config.upload;
  if (!upload) return undefined;
  if ('server' in upload) return { server: upload.server, ca: upload.ca, cert: upload.cert };
  const fleet = join(upload.device, FLEET_SUBDIR);
  return {
    server: await enrolledServer(join(fleet, FLEET_FILES.state)),
    ca: join(fleet, FLEET_FILES.ca),
    cert: join(fleet, FLEET_FILES.certificate),
  };
}

/** The control plane an enrolled device talks to; undefined when the state file is missing or damaged. */
async function enrolledServer(statePath: string): Promise<string | undefined> {
  try {
    const server = (
      JSON.parse(await readBoundedText(statePath, FILE_CAPS.config, 'read the fleet state')) as {
        server?: unknown;
      } | null
    )?.server;
    return typeof server === 'string' ? server : undefined;
  } catch {
    return undefined;
  }
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Every certificate of a PEM file, leaf first; empty when the file is missing or unreadable. */
export async function readCertificates(path: string): Promise<X509Certificate[]> {
  const pem = await readBoundedText(path, FILE_CAPS.certificate, 'read the certificates').catch(() => '');
  try {
    return (pem.match(PEM_CERTIFICATE) ?? []).map((block) => new X509Certificate(block));
  } catch {
    return [];
  }
}

/** Each certificate signed by the next, the last one by the pinned root (as TLS would build it). */
function chainsTo(chain: readonly X509Certificate[], root: X509Certificate): boolean {
  const issuers = [...chain.slice(1), root];
  return chain.every((cert, i) => cert.checkIssued(issuers[i]!) && cert.verify(issuers[i]!.publicKey));
}

/** The device certificate of agent.yaml's upload section (journal entries are signed with its key). */
export async function deviceCertificate(target: ChecklistTarget): Promise<X509Certificate | undefined> {
  const files = await mtlsFiles(target);
  return files ? (await readCertificates(files.cert))[0] : undefined;
}

function judgeCertificates(files: MtlsFiles, chain: X509Certificate[], ca: X509Certificate, now: Date) {
  const cert = chain[0]!;
  const fails: string[] = [];
  const warns: string[] = [];
  const passes: string[] = [];
  if (!files.server?.startsWith('https://'))
    fails.push(`the control plane URL is not https (${files.server ?? 'none'})`);
  if (!chainsTo(chain, ca)) fails.push('the device certificate was not issued by the pinned fleet CA');
  if (new Date(cert.validTo) < now) fails.push(`the device certificate expired on ${cert.validTo}`);
  else if (new Date(cert.validFrom) > now) warns.push(`the device certificate is not valid before ${cert.validFrom}`);
  if (fails.length + warns.length === 0)
    passes.push(`mutual TLS to ${files.server} with a device certificate valid until ${cert.validTo}`);
  return { fails, warns, passes };
}

export const mutualTls: CheckDefinition = {
  id: 'EG-04',
  title: 'edge-cloud traffic over mutual TLS',
  audit:
    "agent.yaml's upload section: https control plane, the pinned fleet CA, a device certificate issued by it and valid now",
  expected: 'https URL, device certificate chaining to the pinned fleet CA, within its validity',
  remediation: 'enroll the device (edgeguard agent enroll) and set upload: { device: DIR } in agent.yaml',
  async run(target) {
    const files = await mtlsFiles(target);
    if (!files)
      return {
        status: 'NOT-APPLICABLE',
        actual: 'agent.yaml has no upload section: the device talks to no control plane',
        evidence: [],
      };
    const chain = await readCertificates(files.cert);
    const cert = chain[0];
    const ca = (await readCertificates(files.ca))[0];
    const evidence: Evidence[] = [];
    if (cert) evidence.push({ name: 'device certificate sha256', value: cert.fingerprint256, path: files.cert });
    if (ca) evidence.push({ name: 'fleet CA sha256', value: ca.fingerprint256, path: files.ca });
    if (!cert || !ca)
      return { status: 'FAIL', actual: `unreadable ${!cert ? 'device certificate' : 'fleet CA'}`, evidence };
    return { ...combine(judgeCertificates(files, chain, ca, new Date())), evidence };
  },
};
