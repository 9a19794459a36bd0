/**
 * The `egress:` section of agent.yaml: one description of everything the device talks to, from
 * which the nftables rule set, the NetworkPolicy and the systemd drop-in are generated, so the
 * three never disagree. Unknown keys are refused, like the rest of agent.yaml.
 *
 *   egress:
 *     controlPlane: https://cp.example.com:8443   # default: upload.server
 *     dns: [10.0.0.53]                            # resolvers, by address
 *     ntp: [10.0.0.123, ntp.example.com]
 *     endpoints: [{ host: registry.example.com, port: 443 }, { host: 10.20.0.0/16, port: 9000, protocol: udp }]
 */
import { z } from 'zod';

/** A name resolved when the rules are generated, or an address. */
const host = z.union([z.ipv4(), z.ipv6(), z.hostname().min(1).max(253)]);
const port = z.number().int().min(1).max(65535);

export const egressConfigSchema = z
  .object({
    /** The control plane (https URL); its addresses and port are allowed. Default: upload.server. */
    controlPlane: z.url({ protocol: /^https$/ }).optional(),
    /** DNS resolvers by address (a resolver named by a name it would itself resolve cannot work). */
    dns: z
      .array(z.union([z.ipv4(), z.ipv6()]))
      .max(8)
      .default([]),
    /** NTP servers (UDP 123), for the host's time service; not needed by the agent itself. */
    ntp: z.array(host).max(8).default([]),
    /** Anything else the device must reach: a name, an address or a CIDR block, and one port. */
    endpoints: z
      .array(
        z
          .object({
            host: z.union([host, z.cidrv4(), z.cidrv6()]),
            port,
            protocol: z.enum(['tcp', 'udp']).default('tcp'),
          })
          .strict(),
      )
      .max(64)
      .default([]),
  })
  .strict();

export type EgressConfig = z.infer<typeof egressConfigSchema>;
