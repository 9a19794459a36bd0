/**
 * Which plugins make up the control plane, decided here and nowhere else: the audit log (its
 * checkpoint key in the data directory), the review queue, remote attestation, the release
 * repository (read-only, DATADIR/releases/repository under /v1/tuf/) and the dashboard (/ui),
 * over the core routes of app.ts (public, enrollment, devices). `edgeguard server` and the demo start exactly this set; a new
 * route module joins by a line here.
 */
import type { ServerPlugin } from './plugins.ts';
import type { AttestationOptions } from './attestation/verifier.ts';
import { attestationServerPlugin, type AttestationServerPlugin } from './routes/attestation.ts';
import { auditServerPlugin, type AuditServerPlugin } from './routes/audit.ts';
import { reviewServerPlugin } from './routes/review.ts';
import { tufServerPlugin } from './routes/tuf.ts';
import { uiServerPlugin } from './routes/ui.ts';
import type { ChecklistReportSource } from './ui/data.ts';

export interface ControlPlaneOptions {
  /** The server's data directory: the audit log keeps audit-log.key and audit-log.pub there. */
  dataDir: string;
  /** The audit log's origin (C2SP); every replica of one fleet uses the same. */
  origin?: string;
  /** The origin of a new log when `origin` is absent (e.g. logOriginFor(server URL)). */
  defaultOrigin?: string;
  /** How often the audit log publishes a signed checkpoint (the audit plugin's default when absent). */
  checkpointIntervalMs?: number;
  /** Freshness window, nonce lifetime and failure actions of remote attestation. */
  attestation?: AttestationOptions;
  /** Where the dashboard reads devices' checklist reports (it shows "no report" without). */
  checklistReports?: ChecklistReportSource;
}

export interface ControlPlanePlugins {
  /** Every plugin, in registration order. */
  all: ServerPlugin[];
  /** The audit log's plugin (its `log` once the server runs). */
  audit: AuditServerPlugin;
  /** Remote attestation: its `attestationGate(deviceId)` is what the release work asks. */
  attestation: AttestationServerPlugin;
}

export function controlPlanePlugins(o: ControlPlaneOptions): ControlPlanePlugins {
  const audit = auditServerPlugin({
    dataDir: o.dataDir,
    ...(o.checkpointIntervalMs !== undefined ? { checkpointIntervalMs: o.checkpointIntervalMs } : {}),
    ...(o.origin !== undefined ? { origin: o.origin } : {}),
    ...(o.defaultOrigin !== undefined ? { defaultOrigin: o.defaultOrigin } : {}),
  });
  const attestation = attestationServerPlugin(o.attestation);
  return {
    all: [
      audit,
      reviewServerPlugin(),
      attestation,
      tufServerPlugin({ dataDir: o.dataDir }),
      uiServerPlugin({
        auditLog: () => audit.log,
        ...(o.checklistReports ? { checklistReports: o.checklistReports } : {}),
      }),
    ],
    audit,
    attestation,
  };
}
