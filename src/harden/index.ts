/**
 * Device hardening: egress rules generated from agent.yaml's `egress:` section (nftables,
 * Kubernetes NetworkPolicy, systemd drop-in), and the preflight that says whether they and the
 * boot chain can hold on this machine (nft, the ipset modules behind K3s's policies, secure boot).
 */
export { egressConfigSchema, type EgressConfig } from './egress-config.ts';
export { planEgress, type EgressPlan, type EgressRule, type EgressPurpose, type EgressSource } from './egress-plan.ts';
export { renderNftables, NFT_TABLE, NFT_DROP_COUNTER, NFT_LOG_PREFIX } from './nftables.ts';
export { renderNetworkPolicy, AGENT_POD_LABELS, type NetworkPolicyOptions } from './network-policy.ts';
export { renderSystemdDropIn } from './systemd-dropin.ts';
export { listEgressTable, parseEgressTableListing, readEgressTableState, type EgressTableState } from './nft-state.ts';
export { kernelModuleAvailability, type ModuleAvailability } from './kernel-modules.ts';
export {
  EFI_GLOBAL_VARIABLE_GUID,
  parseEfiBooleanVariable,
  readSecureBootState,
  type EfiBooleanVariable,
  type SecureBootState,
} from './secure-boot.ts';
export {
  checkHardening,
  findExecutable,
  KUBE_ROUTER_MODULES,
  type HardeningCheck,
  type HardeningFinding,
  type HardeningReport,
} from './preflight.ts';
