/**
 * Which plugins make up the control plane, decided here and nowhere else: the audit log (its
 * checkpoint key in the data directory), the review queue, remote attestation, the release
 * repository (read-only, DATADIR/releases/repository under /v1/tuf/, its timestamp re-signed), the
 * release director (gated on attestation), device checklist reports and the dashboard (/ui), over
 * the core routes of app.ts (public, enrollment, devices). `edgeguard server` and the demo start
 * exactly this set; a new route module joins by a line here.
 */
import type { ServerPlugin } from './plugins.ts';
import type { AttestationOptions } from './attestation/verifier.ts';
import { attestationServerPlugin, type AttestationServerPlugin } from './routes/attestation.ts';
import { auditServerPlugin, type AuditServerPlugin } from './routes/audit.ts';
import { checklistReportSource, checklistServerPlugin, type ChecklistServerPlugin } from './routes/checklist.ts';
import { directorServerPlugin, type DirectorServerPlugin } from './routes/director.ts';
import { reviewServerPlugin } from './routes/review.ts';
import { tufServerPlugin, type TufPluginOptions } from './routes/tuf.ts';
import { uiServerPlugin } from './routes/ui.ts';
import type { DirectorOptions } from './director/director.ts';

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
  /** Lifetimes of director metadata and report nonces. */
  director?: Pick<DirectorOptions, 'metadataExpirySeconds' | 'nonceTtlSeconds'>;
  /** How often the release timestamp's expiry is checked for re-signing. */
  tuf?: Pick<TufPluginOptions, 'resignIntervalMs'>;
}

export interface ControlPlanePlugins {
  /** Every plugin, in registration order. */
  all: ServerPlugin[];
  /** The audit log's plugin (its `log` once the server runs). */
  audit: AuditServerPlugin;
  /** Remote attestation: its `attestationGate(deviceId)` is what the release work asks. */
  attestation: AttestationServerPlugin;
  /** Device checklist reports: its `records` once the server runs. */
  checklist: ChecklistServerPlugin;
  /** The release director (per-device release metadata, gated on attestation). */
  director: DirectorServerPlugin;
}

export function controlPlanePlugins(o: ControlPlaneOptions): ControlPlanePlugins {
  const audit = auditServerPlugin({
    dataDir: o.dataDir,
    ...(o.checkpointIntervalMs !== undefined ? { checkpointIntervalMs: o.checkpointIntervalMs } : {}),
    ...(o.origin !== undefined ? { origin: o.origin } : {}),
    ...(o.defaultOrigin !== undefined ? { defaultOrigin: o.defaultOrigin } : {}),
  });
  const attestation = attestationServerPlugin(o.attestation);
  const checklist = checklistServerPlugin();
  const director = directorServerPlugin({
    dataDir: o.dataDir,
    gate: (id) => attestation.attestationGate(id),
    ...o.director,
  });
  const tuf = tufServerPlugin({ dataDir: o.dataDir, ...o.tuf });
  return {
    all: [
      audit,
      reviewServerPlugin(),
      attestation,
      tuf,
      director,
      checklist,
      uiServerPlugin({ auditLog: () => audit.log, checklistReports: checklistReportSource(checklist) }),
    ],
    audit,
    attestation,
    director,
    checklist,
  };
}
