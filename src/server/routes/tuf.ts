/**
 * The release repository, read-only, under /v1/tuf/: metadata/ and targets/ of the release
 * workspace DATADIR/releases (docs/formats.md, "Release repository"). Everything served is signed
 * TUF metadata or a signed, encrypted package, so the route adds no trust of its own; it asks for
 * a device or admin certificate like every other route, and it serves only names that
 * `edgeguard release` writes.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EdgeguardError } from '../../errors/index.ts';
import { releasePaths } from '../../release/index.ts';
import type { ServerPlugin } from '../plugins.ts';

/** metadata/FILE or targets/NAME/VERSION/FILE; no dot-only segment, so nothing outside. */
const SERVED_PATH = /^(metadata\/[A-Za-z0-9._-]+\.json|targets(\/[A-Za-z0-9_-][A-Za-z0-9._-]*){1,8})$/;

export function releaseRepositoryDir(dataDir: string): string {
  return releasePaths(join(dataDir, 'releases')).repository;
}

export function tufServerPlugin(o: { dataDir: string }): ServerPlugin {
  const root = releaseRepositoryDir(o.dataDir);
  return {
    name: 'tuf',
    async register(app, ctx) {
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
