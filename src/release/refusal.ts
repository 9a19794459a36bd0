/**
 * What tuf-js's failures mean, as one typed error. tuf-js 5 does not export its error classes and
 * wraps snapshot and targets failures into a RuntimeError whose message carries the original, so
 * the class name is tried first and the message second; test/release/attacks.test.ts pins every
 * mapping against the pinned tuf-js version.
 */
import { EdgeguardError } from '../errors/index.ts';

export type RefusalReason =
  | 'rollback'
  | 'mix-and-match'
  | 'expired'
  | 'signature'
  | 'hash-mismatch'
  | 'too-large'
  | 'unknown-target'
  | 'package-signature'
  | 'below-minimum'
  | 'unreachable'
  | 'malformed'
  | 'not-assigned'
  | 'director-mismatch'
  | 'attestation'
  | 'pcr-authorization';

const ADVICE: Record<RefusalReason, string> = {
  rollback: 'the repository served metadata older than what this device already trusts (rollback)',
  'mix-and-match': 'the repository served metadata of another version than the signed metadata above it names',
  expired: 'the repository served expired metadata (freeze); the publisher must re-sign the timestamp',
  signature: 'metadata lacks the threshold of valid signatures by the keys root names',
  'hash-mismatch': 'a downloaded file does not match the length and hash the signed metadata names',
  'too-large': 'a download was larger than the signed metadata allows (endless data)',
  'unknown-target': 'the signed targets metadata does not list this release',
  'package-signature': 'the package is not signed by a trusted publisher key',
  'below-minimum': 'the release is older than the minimum version this device accepts',
  unreachable: 'the repository could not be reached',
  malformed: 'the repository served metadata that does not parse',
  'not-assigned': 'the director did not assign this target to this device',
  'director-mismatch': 'the director and the release repository disagree on the target',
  attestation: 'the control plane issues release metadata only while the device has fresh, passing attestation',
  'pcr-authorization':
    "a PCR authorization shipped with the release is not signed by this device's PCR policy key, so its boot would lock the binding key",
};

export function releaseRefused(reason: RefusalReason, detail: string, cause?: unknown): EdgeguardError {
  return new EdgeguardError('EG_RELEASE_REFUSED', `update refused: ${ADVICE[reason]} (${detail}).`, {
    cause,
    details: { reason },
  });
}

function classNames(e: object): string[] {
  const names: string[] = [];
  for (let p = Object.getPrototypeOf(e) as object | null; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    names.push((p as { constructor: { name: string } }).constructor.name);
  }
  return names;
}

/** A version that differs from the one the metadata above names: tuf-js raises it as BadVersionError too. */
const MIX_AND_MATCH = /does not match snapshot version|doesn't match timestamp/;

const BY_CLASS: Array<[string, RefusalReason]> = [
  ['DownloadLengthMismatchError', 'too-large'],
  ['DownloadHTTPError', 'unreachable'],
  ['BadVersionError', 'rollback'],
  ['ExpiredMetadataError', 'expired'],
  ['UnsignedMetadataError', 'signature'],
  ['LengthOrHashMismatchError', 'hash-mismatch'],
];

const BY_MESSAGE: Array<[RegExp, RefusalReason]> = [
  [/Max length reached/, 'too-large'],
  [/less than current version/, 'rollback'],
  [/is expired/, 'expired'],
  [/was signed by \d+\/\d+ keys/, 'signature'],
  [/Expected length|Expected hash/, 'hash-mismatch'],
  [/Failed to download|fetch failed|ECONNREFUSED/, 'unreachable'],
];

export function classifyTufError(e: unknown): EdgeguardError {
  if (e instanceof EdgeguardError) return e;
  const message = e instanceof Error ? e.message : String(e);
  const names = typeof e === 'object' && e !== null ? classNames(e) : [];
  const reason: RefusalReason = MIX_AND_MATCH.test(message)
    ? 'mix-and-match'
    : (BY_CLASS.find(([name]) => names.includes(name))?.[1] ??
      BY_MESSAGE.find(([re]) => re.test(message))?.[1] ??
      'malformed');
  return releaseRefused(reason, message, e);
}
