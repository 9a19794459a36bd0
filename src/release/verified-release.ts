/**
 * A fetched release as the installer's input (install.ts VerifiedRelease): the signed release facts,
 * the verified files, and the smoke-test input read into memory. One function for every caller that
 * fetched a release (the repository path, the director path, the demo, the update benchmark).
 */
import { readFile } from 'node:fs/promises';
import { fsError } from '../errors/index.ts';
import type { VerifiedRelease } from './install.ts';
import type { ReleaseCustom } from './release-target.ts';

export interface FetchedFiles {
  release: ReleaseCustom;
  packagePath: string;
  signaturePath: string;
  smokeInputPath?: string | undefined;
}

export async function verifiedReleaseOf(f: FetchedFiles, wrappedKey?: string): Promise<VerifiedRelease> {
  const r = f.release;
  const smokeInput =
    r.smokeTest && f.smokeInputPath
      ? await readFile(f.smokeInputPath).catch((e: unknown) => {
          throw fsError(e, f.smokeInputPath!, 'read the smoke-test input');
        })
      : undefined;
  return {
    kind: r.kind,
    name: r.name,
    version: r.version,
    minVersion: r.minVersion,
    headerSha256: r.headerSha256,
    packagePath: f.packagePath,
    signaturePath: f.signaturePath,
    ...(wrappedKey !== undefined ? { wrappedKey } : {}),
    ...(r.smokeTest && smokeInput
      ? { smokeTest: { input: smokeInput, expectedLabel: r.smokeTest.expectedLabel } }
      : {}),
  };
}
