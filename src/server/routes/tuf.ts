/**
 * The release repository, read-only, under /v1/tuf/: metadata/ and targets/ of the release
 * workspace DATADIR/releases (docs/formats.md, "Release repository"). Everything served is signed
 * TUF metadata or a signed, encrypted package, so the route adds no trust of its own; it asks for
 * a device or admin certificate like every other route, and it serves only names that
 * `edgeguard release` writes.
 *
 * The control plane holds the online keys (DATADIR/releases/keys/online): a timer re-signs the
 * timestamp (and the snapshot when it too nears expiry) before it expires, so devices are not
 * frozen out by an operator who forgets; see resignOnlineMetadata.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { EdgeguardError } from '../../errors/index.ts';
import { releasePaths, resignOnlineMetadata } from '../../release/index.ts';
import type { ServerPlugin } from '../plugins.ts';

/** metadata/FILE or targets/NAME/VERSION/FILE; no dot-only segment, so nothing outside. */
const SERVED_PATH = /^(metadata\/[A-Za-z0-9._-]+\.json|targets(\/[A-Za-z0-9_-][A-Za-z0-9._-]*){1,8})$/;

export function releaseRepositoryDir(dataDir: string): string {
  return releasePaths(join(dataDir, 'releases')).repository;
}

export interface TufPluginOptions {
  dataDir: string;
  /** How often the timestamp's expiry is looked at (default 60 s). */
  resignIntervalMs?: number;
}

/** Re-sign the online roles when due; a data directory without a release workspace has nothing to do. */
function startResigning(app: FastifyInstance, workspace: string, everyMs: number): void {
  let busy = false;
  const run = () => {
    if (busy || !existsSync(releasePaths(workspace).onlineKeys)) return;
    busy = true;
    resignOnlineMetadata(workspace)
      .then((r) => {
        if (r.timestampVersion !== undefined) app.log.info(r, 'release repository: online metadata re-signed');
      })
      .catch((err: unknown) => app.log.error({ err }, 're-signing the release timestamp failed'))
      .finally(() => {
        busy = false;
      });
  };
  const timer = setInterval(run, everyMs);
  timer.unref();
  app.addHook('onClose', async () => clearInterval(timer));
}

export function tufServerPlugin(o: TufPluginOptions): ServerPlugin {
  const root = releaseRepositoryDir(o.dataDir);
  return {
    name: 'tuf',
    async register(app, ctx) {
      startResigning(app, join(o.dataDir, 'releases'), o.resignIntervalMs ?? 60_000);
      app.get(
        '/v1/tuf/*',
        {
          onRequest: ctx.requireDeviceOrAdmin,
          schema: { tags: ['releases'], summary: 'A file of the TUF release repository (metadata or target)' },
        },
        async (req, reply) => {
          const path = (req.params as { '*': string })['*'];
          if (!SERVED_PATH.test(path) || path.split('/').some((s) => /^\.+$/.test(s))) {
            throw new EdgeguardError('EG_NOT_FOUND', `/v1/tuf/${path} is not a repository file.`);
          }
          let bytes: Buffer;
          try {
            bytes = await readFile(join(root, path));
          } catch {
            throw new EdgeguardError('EG_NOT_FOUND', `/v1/tuf/${path} does not exist in the release repository.`);
          }
          return reply.type('application/octet-stream').send(bytes);
        },
      );
    },
  };
}
