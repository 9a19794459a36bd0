/**
 * The agent's own egress allowlist: every connection a FleetClient opens (journal forwarding,
 * review uploads, renewal, enrollment) goes through one dialer built from the same egress plan as
 * the nftables rules, the NetworkPolicy and the systemd drop-in (src/harden), so the process
 * refuses what the host firewall would drop, with a typed error and an audit event instead of a
 * silent timeout. Literal addresses are checked before connecting; names are checked after
 * resolution, on every address the resolver returned (a name that resolves to one allowed and one
 * unlisted address is refused, not raced).
 */
import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { EdgeguardError } from '../errors/index.ts';
import type { EgressPlan } from '../harden/index.ts';

export interface EgressDenial {
  host: string;
  port: number;
  reason: string;
}

function addCidrs(list: BlockList, ipv4: string[], ipv6: string[]): void {
  for (const [cidrs, family] of [
    [ipv4, 'ipv4'],
    [ipv6, 'ipv6'],
  ] as const) {
    for (const cidr of cidrs) {
      const [address, prefix] = cidr.split('/');
      if (prefix === undefined) list.addAddress(address!, family);
      else list.addSubnet(address!, Number(prefix), family);
    }
  }
}

export class EgressDialer {
  /** Allowed TCP destinations by port. */
  private readonly byPort = new Map<number, BlockList>();

  /** `onDenied`: the agent journals egress.denied here. */
  constructor(
    plan: EgressPlan,
    private readonly onDenied: (denial: EgressDenial) => void = () => undefined,
  ) {
    for (const rule of plan.rules) {
      if (!rule.agent || rule.protocol !== 'tcp') continue;
      const list = this.byPort.get(rule.port) ?? new BlockList();
      addCidrs(list, rule.ipv4, rule.ipv6);
      this.byPort.set(rule.port, list);
    }
  }

  allows(address: string, port: number): boolean {
    const family = isIP(address);
    if (family === 0) return false;
    return this.byPort.get(port)?.check(address, family === 4 ? 'ipv4' : 'ipv6') ?? false;
  }

  private deny(host: string, port: number, reason: string): EdgeguardError {
    this.onDenied({ host, port, reason });
    return new EdgeguardError(
      'EG_EGRESS_DENIED',
      `the agent's egress allowlist refuses ${host} port ${port} (${reason}); add it to agent.yaml's egress: section if the device must reach it.`,
      { details: { host, port } },
    );
  }

  /** Before connecting: a literal address must be listed; a name is checked by lookup(). */
  checkUrl(url: URL): void {
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    const port = url.port ? Number(url.port) : 443;
    if (isIP(host) !== 0 && !this.allows(host, port)) throw this.deny(host, port, 'address not listed');
  }

  /** The resolver for connections to `port`: every address of the name must be listed. */
  lookupFor(port: number): LookupFunction {
    return (hostname, options, callback) => {
      dnsLookup(hostname, { ...(options as object), all: true } as LookupAllOptions, (err, addresses) => {
        if (err) return callback(err, '', 0);
        const list = addresses as LookupAddress[];
        const unlisted = list.find((a) => !this.allows(a.address, port));
        if (unlisted || list.length === 0) {
          const reason = unlisted ? `resolves to ${unlisted.address}, not listed` : 'resolves to nothing';
          return callback(this.deny(hostname, port, reason) as unknown as NodeJS.ErrnoException, '', 0);
        }
        if ((options as { all?: boolean }).all)
          return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, list);
        callback(null, list[0]!.address, list[0]!.family);
      });
    };
  }
}
