/**
 * The agent's egress allowlist from agent.yaml's `egress:` section: the same plan (src/harden) the
 * host's nftables rules, NetworkPolicy and systemd drop-in are generated from, turned into the one
 * dialer every control-plane client of the agent connects through (src/fleet/egress-dialer.ts).
 * Without an `egress:` section the agent relies on the host's rules alone.
 */
import { EgressDialer, type EgressDenial } from '../fleet/index.ts';
import { planEgress } from '../harden/index.ts';
import type { AgentConfig } from './config.ts';

/**
 * `server`: the control plane the agent was configured with (upload.server or the enrolled
 * device's); without one, egress.controlPlane must name it (EG_CONFIG otherwise).
 */
export async function agentEgressDialer(
  config: AgentConfig,
  server: string | undefined,
  onDenied: (denial: EgressDenial) => void,
): Promise<EgressDialer | undefined> {
  if (!config.egress) return undefined;
  return new EgressDialer(await planEgress({ egress: config.egress, uploadServer: server }), onDenied);
}
