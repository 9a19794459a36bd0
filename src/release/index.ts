/** Public face of the release module: the TUF release repository and the device's release check. */
export { type AttestationGate } from './gate.ts';
export { ROLES, OFFLINE_ROLES, type RoleName, releasePaths, type ReleasePaths } from './layout.ts';
export { DEFAULT_EXPIRY_SECONDS, parseDuration, type ReleaseSettings } from './settings.ts';
export {
  type InitOptions,
  type InitResult,
  type PublishResult,
  type RotateRootResult,
  initRepository,
  publishRepository,
  rotateRoot,
  readRoleKeys,
} from './repository.ts';
export {
  RELEASE_KINDS,
  type ReleaseKind,
  type ReleaseCustom,
  type AddReleaseOptions,
  addRelease,
} from './release-target.ts';
export { readCurrentMetadata, type CurrentMetadata } from './metadata-files.ts';
export {
  DurableUpdater,
  provisionTrustedRoot,
  fetchRelease,
  type FetchReleaseOptions,
  type FetchedRelease,
} from './client.ts';
export { type RefusalReason, releaseRefused } from './refusal.ts';
