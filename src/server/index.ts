/** The control-plane server: build it (app.ts), start it from a data directory (run.ts), its plugin set (control-plane.ts). */
export { buildServer, type BuildServerOptions, type BuiltServer } from './app.ts';
export { startServer, parseListen, type StartServerOptions, type RunningServer } from './run.ts';
export { controlPlanePlugins, type ControlPlaneOptions, type ControlPlanePlugins } from './control-plane.ts';
export type { ServerPlugin } from './plugins.ts';
export {
  DEFAULT_POLICY,
  type ControlPlaneContext,
  type ServerPolicy,
  type ServerPolicyOptions,
  type ServerLimits,
} from './context.ts';
export { EnrollmentService, readAutoApproveList } from './enrollment.ts';
export { httpStatusOf, ERROR_SCHEMA } from './errors.ts';
export {
  AuditEvents,
  EVENT_FAILURE_POLICY,
  type AuditEventSink,
  type EventFailurePolicy,
  type EventInput,
} from './events.ts';
export { attestationServerPlugin, type AttestationServerPlugin } from './routes/attestation.ts';
export { AttestationVerifier, type AttestationOptions } from './attestation/verifier.ts';
export { openServerStore, SERVER_CONFIG_FILE } from './server-config.ts';
export { loadServerConfig, parseServerConfigYaml, type ServerFileConfig } from './limits-config.ts';
export { recordAdminCertificate } from './admin-cert.ts';
export { directorServerPlugin, type DirectorServerPlugin } from './routes/director.ts';
export { Director, type DirectorGate, type DirectorOptions } from './director/director.ts';
export { uiServerPlugin, type UiPluginOptions } from './routes/ui.ts';
export { createUiLoginLink, UI_LINK_TTL_MS, UI_SESSION_TTL_MS, type UiLoginLink } from './ui/sessions.ts';
export type { ChecklistReportSource, StoredChecklistReport } from './ui/data.ts';
export { issueUiLoginLinkOffline } from './ui/offline-link.ts';
