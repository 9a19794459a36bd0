/**
 * The device agent's public face, for the CLI: its configuration, the inference service (start it,
 * or only load its guarded models) and what a running agent exposes.
 */
export {
  agentConfig,
  loadAgentConfig,
  parseAgentConfigYaml,
  type AgentConfig,
  type AgentConfigInput,
} from './config.ts';
export {
  configDigest,
  loadAgentRuntime,
  startAgent,
  type AgentRuntime,
  type RunningAgent,
  type StartAgentOptions,
} from './serve.ts';
export { agentEgressDialer } from './egress.ts';
export { canReportOnly, startReportingAgent, type ReportingAgent } from './report-only.ts';
export { AgentIdentity } from './renewal.ts';
export {
  AttestationReporter,
  agentAttestationReporter,
  DEFAULT_EVENT_LOG_PATH,
  readDeviceAk,
  type AttestationReport,
  type AttestationReporterOptions,
} from './attestation.ts';
export { DeviceLease, type DeviceLeaseOptions, type LeaseLoss } from './lease.ts';
export { runAgentUpdate, type AgentUpdateOptions, type AgentUpdateOutcome } from './update.ts';
export { ServedRuntime } from './served-runtime.ts';
