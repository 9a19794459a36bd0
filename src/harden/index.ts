/**
 * Device hardening: egress rules generated from agent.yaml's `egress:` section (nftables,
 * Kubernetes NetworkPolicy, systemd drop-in).
 */
export { egressConfigSchema, type EgressConfig } from './egress-config.ts';
export { planEgress, type EgressPlan, type EgressRule, type EgressPurpose, type EgressSource } from './egress-plan.ts';
export { renderNftables, NFT_TABLE, NFT_DROP_COUNTER, NFT_LOG_PREFIX } from './nftables.ts';
export { renderNetworkPolicy, AGENT_POD_LABELS, type NetworkPolicyOptions } from './network-policy.ts';
export { renderSystemdDropIn } from './systemd-dropin.ts';
