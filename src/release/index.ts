/** Public face of the release module: the TUF release repository and the device's release check. */
export { type AttestationGate } from './gate.ts';
export { ROLES, OFFLINE_ROLES, type RoleName, releasePaths, type ReleasePaths } from './layout.ts';
export { DEFAULT_EXPIRY_SECONDS, parseDuration, type ReleaseSettings } from './settings.ts';
export {
  type InitOptions,
  type InitResult,
  type PublishResult,
  type RotateRootResult,
  type ResignResult,
  initRepository,
  resignOnlineMetadata,
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
  PCR_AUTHORIZATION_TARGETS,
  MAX_PCR_AUTHORIZATIONS,
} from './release-target.ts';
export {
  type ShippedPcrAuthorization,
  devicePcrPolicyKey,
  fetchPcrAuthorizations,
  installPcrAuthorizations,
} from './shipped-authorizations.ts';
export { readCurrentMetadata, type CurrentMetadata } from './metadata-files.ts';
export {
  DurableUpdater,
  provisionTrustedRoot,
  fetchRelease,
  type FetchReleaseOptions,
  type FetchedRelease,
} from './client.ts';
export { type RefusalReason, releaseRefused } from './refusal.ts';
export { MtlsFetcher, type MtlsFetcherOptions } from './mtls-fetcher.ts';
export { RepositoryFetcher, type RepositoryFetcherOptions } from './repository-fetcher.ts';
export {
  DIRECTOR_TARGETS_PATH,
  fetchAssignedRelease,
  type AssignedRelease,
  type FetchAssignedOptions,
} from './assigned.ts';
export {
  MAX_DIRECTOR_METADATA_BYTES,
  buildDirectorTargets,
  signDirectorTargets,
  verifyDirectorMetadata,
  checkAgreement,
  type DirectorAssignment,
  type DirectorCustom,
  type VerifiedDirectorMetadata,
} from './director-metadata.ts';
export { tufKeyOf, generateRoleKey, readRoleKey, writeRoleKey, type RoleKey } from './keys.ts';
export {
  SLOT_NAMES,
  SLOT_FILES,
  type SlotName,
  type SlotManifest,
  type SlotPointer,
  type SlotState,
  type VerifiedSlot,
  readPointer,
  readSlots,
  recoverSlots,
  verifySlot,
} from './slots.ts';
export {
  type AntiRollbackFloor,
  type FloorBindingKey,
  type ProvisionTpmFloorResult,
  type TpmFloorKind,
  type TpmFloorState,
  DEFAULT_FLOOR_NV_INDEX,
  FLOOR_BASELINES_ATTRIBUTES,
  FLOOR_BASELINES_DEFINE_ATTRIBUTES,
  FLOOR_BASELINES_OFFSET,
  FLOOR_BASELINES_SIZE,
  MAX_FLOOR_STEP,
  SOFTWARE_FLOOR_LABEL,
  TPM_FLOOR_LABEL,
  SoftwareFloor,
  TpmFloor,
  encodeFloorBaselines,
  expectedBaselinesName,
  parseFloorBaselines,
  parseFloorNvIndex,
} from './floor.ts';
export {
  type VerifiedRelease,
  type InstallContext,
  type InstallOutcome,
  installRelease,
  recoverInstall,
  servedSlots,
  slotContentKey,
} from './install.ts';
export {
  INSTALL_LOCK_FILE,
  MAX_INSTALL_LOCK_BYTES,
  UNPARSABLE_LOCK_GRACE_MS,
  type InstallLock,
  type InstallLockHolder,
  type InstallLockOptions,
  type LockVerdict,
  acquireInstallLock,
  installLockPath,
  judgeInstallLock,
  parseInstallLock,
  processStartTime,
  startTimeFromStat,
  withInstallLock,
} from './install-lock.ts';
export { type SmokeTest, trialLoad } from './trial-load.ts';
export { type FetchedFiles, verifiedReleaseOf } from './verified-release.ts';
export { type HandoffOptions, type HandoffResult, handOff } from './handoff.ts';
export { type PendingOutcome, recordOutcome, pendingOutcomes } from './outcomes.ts';
export {
  type DeviceUpdateOptions,
  type DirectorReport,
  type DirectorUpdateOptions,
  type DirectorUpdateOutcome,
  updateDevice,
  updateFromDirector,
} from './device-update.ts';
export { removeInterruptedReplacementsSync } from './durable-file.ts';
