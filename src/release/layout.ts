/**
 * Where a release workspace keeps what. Only `repository/` is published (any static host, or the
 * control plane under /v1/tuf/); keys live beside it so that serving the repository can never
 * expose one. Offline keys (root, targets) belong on an offline machine; online keys (snapshot,
 * timestamp) are the ones the control plane holds.
 */
import { join } from 'node:path';

export const ROLES = ['root', 'targets', 'snapshot', 'timestamp'] as const;
export type RoleName = (typeof ROLES)[number];

export const OFFLINE_ROLES: readonly RoleName[] = ['root', 'targets'];

export function releasePaths(dir: string) {
  const repository = join(dir, 'repository');
  return {
    repository,
    metadata: join(repository, 'metadata'),
    targets: join(repository, 'targets'),
    offlineKeys: join(dir, 'keys', 'offline'),
    onlineKeys: join(dir, 'keys', 'online'),
    retiredKeys: join(dir, 'keys', 'retired'),
    settings: join(dir, 'release.json'),
    staged: join(dir, 'staged-targets.json'),
  };
}

export type ReleasePaths = ReturnType<typeof releasePaths>;

export function keyDirFor(paths: ReleasePaths, role: RoleName): string {
  return OFFLINE_ROLES.includes(role) ? paths.offlineKeys : paths.onlineKeys;
}
