/**
 * The device's half of the director (Uptane Standard 1.2, section 5.4.4.2, "Full verification"):
 * fetch this device's director metadata over mutual TLS and verify it against the pinned director
 * keys, refresh the release repository with tuf-js through the same connection, check that both
 * name the same bytes, then download and verify the package as `fetchRelease` does. What comes
 * back is what the agent's installer consumes: a verified package on disk (encrypted; the content
 * key never touches the disk) and the content key wrapped to this device's TPM binding key.
 */
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { fsError } from '../errors/index.ts';
import type { EgressDialer } from '../fleet/index.ts';
import { parseWrappedKeyFile } from '../keystore/index.ts';
import {
  DurableUpdater,
  downloadVerified,
  releaseOf,
  tuf,
  type FetchReleaseOptions,
  type FetchedRelease,
} from './client.ts';
import { checkAgreement, MAX_DIRECTOR_METADATA_BYTES, verifyDirectorMetadata } from './director-metadata.ts';
import { replaceFileDurablySync } from './durable-file.ts';
import { tufKeyOf } from './keys.ts';
import { MtlsFetcher } from './mtls-fetcher.ts';
import { classifyTufError, releaseRefused } from './refusal.ts';
import type { ReleaseCustom, ReleaseKind } from './release-target.ts';

/** Where the control plane serves them (src/server/routes/tuf.ts and director.ts). */
export const DIRECTOR_TARGETS_PATH = '/v1/director/targets.json';
export const REPOSITORY_PATH = '/v1/tuf';

export interface FetchAssignedOptions {
  /** The control plane, https://HOST:PORT. */
  server: string;
  /** Fleet CA (PEM), the device certificate chain and its key (PEM): the mutual TLS of every call. */
  ca: string;
  cert: string;
  key: string;
  /** The agent's egress allowlist, applied to every director and repository download. */
  dialer?: EgressDialer | undefined;
  deviceId: string;
  /** tuf-js's trusted metadata (root.json provisioned) and, beside it, director.json (last version). */
  metadataDir: string;
  downloadDir: string;
  publisherKeys: KeyObject[];
  /** The director's Ed25519 public keys, pinned at provisioning (GET /v1/director/keys prints them). */
  directorKeys: KeyObject[];
  /** The lowest version this device may run (its anti-rollback floor). */
  minimumVersion: number;
  /** The device's floor per kind (the installer's), checked before any download. */
  floorOf?: FetchReleaseOptions['floorOf'];
  /** Which assigned release to fetch when the director names several (default: the only one). */
  name?: string;
  /** The device's PCR policy key: the release's PCR authorizations must be signed by it (client.ts). */
  pcrPolicyKey?: KeyObject;
  /** A repository path the device was asked to install: refused unless the director assigned it. */
  path?: string;
  now?: Date;
}

/** The interface with the agent's A/B installer (docs/architecture.md, "Releases"). */
export interface AssignedRelease {
  target: {
    name: string;
    version: number;
    kind: ReleaseKind;
    /** The verified package (encrypted) and its signature file, in downloadDir. */
    path: string;
    signaturePath: string;
    /** The release's smoke-test input (hash-checked like the package), when it names one. */
    smokeInputPath?: string | undefined;
    /** The repository target path, e.g. mnist/3/mnist.egm. */
    tufPath: string;
    custom: ReleaseCustom;
  };
  /** The wrapped key file (docs/formats.md), for `KeyStore.unwrapContentKey`. */
  wrappedKey: string;
  directorVersion: number;
  verified: FetchedRelease['verified'];
  /** Checked against `pcrPolicyKey`; install them (`installPcrAuthorizations`) before the new boot. */
  pcrAuthorizations: FetchedRelease['pcrAuthorizations'];
}

const DIRECTOR_STATE = 'director.json';

async function lastDirectorVersion(metadataDir: string): Promise<number> {
  let text: string;
  try {
    text = await readFile(join(metadataDir, DIRECTOR_STATE), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw fsError(e, join(metadataDir, DIRECTOR_STATE), 'read');
  }
  let v: unknown;
  try {
    v = (JSON.parse(text) as { version?: unknown } | null)?.version;
  } catch {
    v = undefined;
  }
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
    throw releaseRefused('malformed', `${DIRECTOR_STATE} holds no director version`);
  return v;
}

/** null when the director assigns this device nothing. */
export async function fetchAssignedRelease(o: FetchAssignedOptions): Promise<AssignedRelease | null> {
  const base = o.server.replace(/\/+$/, '');
  const fetcher = new MtlsFetcher({ ca: o.ca, cert: o.cert, key: o.key, dialer: o.dialer });
  try {
    const bytes = await fetcher
      .downloadBytes(`${base}${DIRECTOR_TARGETS_PATH}`, MAX_DIRECTOR_METADATA_BYTES)
      .catch((e: unknown) => {
        // 403 from the director route: attestation is not fresh and passing (push evidence, then retry).
        if ((e as { statusCode?: number }).statusCode === 403) throw releaseRefused('attestation', 'HTTP 403', e);
        throw classifyTufError(e);
      });
    const director = verifyDirectorMetadata(bytes, {
      keys: o.directorKeys.map(tufKeyOf),
      deviceId: o.deviceId,
      lastVersion: await lastDirectorVersion(o.metadataDir),
      ...(o.now ? { now: o.now } : {}),
    });
    const chosen = director.targets.filter(
      (t) =>
        (o.path === undefined || t.target.path === o.path) &&
        (o.name === undefined || releaseOf(t.target).name === o.name),
    );
    if (o.path !== undefined && chosen.length === 0)
      throw releaseRefused('not-assigned', `${o.path} is not in director metadata v${director.version}`);
    const remember = () =>
      replaceFileDurablySync(join(o.metadataDir, DIRECTOR_STATE), JSON.stringify({ version: director.version }) + '\n');
    if (chosen.length === 0) {
      remember();
      return null;
    }
    if (chosen.length > 1)
      throw releaseRefused('not-assigned', `the director names ${chosen.length} releases; say which (name)`);
    const assigned = chosen[0]!;
    const updater = new DurableUpdater({
      metadataDir: o.metadataDir,
      metadataBaseUrl: `${base}${REPOSITORY_PATH}/metadata`,
      targetBaseUrl: `${base}${REPOSITORY_PATH}/targets`,
      targetDir: o.downloadDir,
      fetcher,
    });
    await tuf(() => updater.refresh());
    const repository = await tuf(() => updater.getTargetInfo(assigned.target.path));
    checkAgreement(assigned.target, repository ?? undefined);
    const fetched = await downloadVerified(updater, repository!, o);
    // The key the director wrapped must be the one the verified package is encrypted with.
    if (parseWrappedKeyFile(assigned.wrappedKeyText).kid !== fetched.verified.header.keyId) {
      await rm(fetched.packagePath, { force: true });
      await rm(fetched.signaturePath, { force: true });
      if (fetched.smokeInputPath) await rm(fetched.smokeInputPath, { force: true });
      throw releaseRefused('director-mismatch', `the wrapped key is not the content key of ${repository!.path}`);
    }
    remember();
    const r = fetched.release;
    return {
      target: {
        name: r.name,
        version: r.version,
        kind: r.kind,
        path: fetched.packagePath,
        signaturePath: fetched.signaturePath,
        smokeInputPath: fetched.smokeInputPath,
        tufPath: repository!.path,
        custom: r,
      },
      wrappedKey: assigned.wrappedKeyText,
      directorVersion: director.version,
      verified: fetched.verified,
      pcrAuthorizations: fetched.pcrAuthorizations,
    };
  } finally {
    fetcher.close();
  }
}
