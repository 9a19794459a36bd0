/**
 * Which plugins make up the control plane, decided here and nowhere else: the audit log (its
 * checkpoint key in the data directory), the review queue and the release repository (read-only,
 * DATADIR/releases/repository under /v1/tuf/), over the core routes of app.ts
 * (public, enrollment, devices). `edgeguard server` and the demo start exactly this set; a new
 * route module joins by a line here.
 */
import type { ServerPlugin } from './plugins.ts';
import { auditServerPlugin, type AuditServerPlugin } from './routes/audit.ts';
import { reviewServerPlugin } from './routes/review.ts';
import { tufServerPlugin } from './routes/tuf.ts';

export interface ControlPlaneOptions {
  /** The server's data directory: the audit log keeps audit-log.key and audit-log.pub there. */
  dataDir: string;
  /** How often the audit log publishes a signed checkpoint (the audit plugin's default when absent). */
  checkpointIntervalMs?: number;
}

export interface ControlPlanePlugins {
  /** Every plugin, in registration order. */
  all: ServerPlugin[];
  /** The audit log's plugin (its `log` once the server runs). */
  audit: AuditServerPlugin;
}

export function controlPlanePlugins(o: ControlPlaneOptions): ControlPlanePlugins {
  const audit = auditServerPlugin({
    dataDir: o.dataDir,
    ...(o.checkpointIntervalMs !== undefined ? { checkpointIntervalMs: o.checkpointIntervalMs } : {}),
  });
  return { all: [audit, reviewServerPlugin(), tufServerPlugin({ dataDir: o.dataDir })], audit };
}
