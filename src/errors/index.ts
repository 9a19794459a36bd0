/**
 * One error type for the whole codebase: a stable `EG_*` code that scripts can match on, and a
 * sentence a person can act on. The CLI prints `CODE: message`; a stack trace only with --debug.
 */

/** Every code, with the process exit status the CLI maps it to. */
export const ERROR_EXIT_CODES = {
  // Usage and input the operator controls.
  EG_USAGE: 2,
  EG_CONFIG: 2,
  // A trust input (key, CA list, database, their directory) that others than its owner can write.
  EG_UNSAFE_PERMISSIONS: 2,
  EG_NOT_FOUND: 2,
  EG_EXISTS: 2,
  EG_IO: 1,
  // A file read whole (signature, key, certificate, configuration) past the size such a file may have.
  EG_FILE_TOO_LARGE: 2,
  // Package and signature integrity: the bytes cannot be trusted.
  EG_FORMAT: 3,
  EG_UNSUPPORTED: 3,
  EG_TAMPERED: 3,
  EG_TRUNCATED: 3,
  EG_TRAILING_DATA: 3,
  EG_DIGEST_MISMATCH: 3,
  EG_SIGNATURE_INVALID: 3,
  EG_SIGNATURE_MISMATCH: 3,
  // A release the TUF client or the release policy refuses (details.reason says which attack).
  EG_RELEASE_REFUSED: 3,
  // The anti-rollback floor cannot be read as provisioned (an NV index removed, re-created or
  // rewritten), or was never provisioned on this TPM: updates are refused until an operator acts.
  EG_FLOOR_TAMPERED: 3,
  EG_FLOOR_UNPROVISIONED: 3,
  // A verified release that did not install (trial load, smoke test, installer command): the device stays on the old one.
  EG_INSTALL_FAILED: 10,
  // Another install holds the data directory's install lock: nothing was done; try again later.
  EG_BUSY: 11,
  // Keys.
  EG_KEY_FORMAT: 4,
  EG_WRONG_KEY: 4,
  EG_KEY_PERMISSIONS: 4,
  // TPM.
  EG_TPM: 5,
  EG_TPM_UNAVAILABLE: 5,
  EG_TPM_POLICY: 5,
  EG_TPM_STRUCTURE: 5,
  EG_TPM_RESOURCES: 5,
  EG_TPM_AUTH: 5,
  EG_TPM_WRONG_DEVICE: 5,
  // Inference and the input guard.
  EG_MODEL_LOAD: 6,
  EG_INPUT: 6,
  EG_INFERENCE: 6,
  EG_GUARD: 6,
  // The inference service (HTTP): overload, timeouts, bodies it does not take.
  EG_OVERLOADED: 6,
  EG_TIMEOUT: 6,
  EG_UNSUPPORTED_MEDIA_TYPE: 6,
  EG_PAYLOAD_TOO_LARGE: 6,
  // A client of the inference service whose queries look like a black-box attack (near-duplicates).
  EG_PROBING: 6,
  // Network, PKI, server, attestation, audit.
  EG_TLS: 7,
  EG_PKI: 7,
  EG_ENROLL: 7,
  EG_UNAUTHORIZED: 7,
  EG_FORBIDDEN: 7,
  EG_SERVER: 7,
  EG_BAD_REQUEST: 7,
  EG_RATE_LIMITED: 7,
  EG_AUDIT: 8,
  EG_AUDIT_INCONSISTENT: 8,
  // A security event could not be appended to the audit log (the server answers 503).
  EG_AUDIT_UNAVAILABLE: 8,
  // The audit store holds fewer entries than a checkpoint already signed (a restored backup, deleted
  // rows): appending would reuse indices that can never be signed, so appends stop (the server answers 503).
  EG_AUDIT_BEHIND: 8,
  // Device hardening: a preflight check that does not hold.
  EG_PREFLIGHT: 9,
  // Tamper: a sensor that cannot be read, a device locked after a tamper response.
  EG_TAMPER_SENSOR: 9,
  EG_LOCKED: 9,
  // Measured boot: event logs, appraisal policies, and a boot the policy refuses.
  EG_EVENTLOG_MALFORMED: 9,
  EG_EVENTLOG_TOO_LARGE: 9,
  EG_ATTEST_POLICY: 9,
  EG_ATTEST_REFUSED: 9,
  // The agent's own egress allowlist refused a destination.
  EG_EGRESS_DENIED: 9,
  EG_INTERNAL: 1,
} as const;

export type ErrorCode = keyof typeof ERROR_EXIT_CODES;

export interface EdgeguardErrorOptions {
  cause?: unknown;
  /** Structured facts for --json output and logs (chunk index, offsets, ids). Never secrets. */
  details?: Record<string, unknown>;
}

export class EdgeguardError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: EdgeguardErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'EdgeguardError';
    this.code = code;
    this.details = options.details;
  }

  get exitCode(): number {
    return ERROR_EXIT_CODES[this.code];
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, ...(this.details ? { details: this.details } : {}) };
  }
}

export function isEdgeguardError(e: unknown, code?: ErrorCode): e is EdgeguardError {
  return e instanceof EdgeguardError && (code === undefined || e.code === code);
}

/**
 * An EdgeguardError without a stack trace, for refusals made at a client's pace (input that is not
 * what it claims to be, overload): the trace would point at the same line every time, and Node's
 * streams format it when the error passes through them (with source maps, hundreds of
 * microseconds: more than the refusal itself). Its `stack` is the name and the message.
 */
export function refusal(code: ErrorCode, message: string, options?: EdgeguardErrorOptions): EdgeguardError {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return new EdgeguardError(code, message, options);
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/**
 * A value from outside (a JSON or YAML member not yet checked to be a string or number) as a short
 * piece of an error message. String() and template literals run the value's own toString/valueOf,
 * and an array of objects whose toString is not a function (`[{"toString":0}]`) makes them throw a
 * TypeError; JSON text cannot. At most `max` characters.
 */
export function describeValue(value: unknown, max = 40): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch {
    text = undefined;
  }
  text ??= typeof value;
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** Wrap an unknown failure (fs, OpenSSL, ORT) so the user sees a code and a sentence, not a trace. */
export function asEdgeguardError(e: unknown, code: ErrorCode, message: string): EdgeguardError {
  if (e instanceof EdgeguardError) return e;
  return new EdgeguardError(code, message, { cause: e });
}

/** Map a Node fs error on `path` to a typed error. */
export function fsError(e: unknown, path: string, action: string): EdgeguardError {
  if (e instanceof EdgeguardError) return e;
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT')
    return new EdgeguardError('EG_NOT_FOUND', `${path} does not exist; check the path.`, { cause: e });
  if (code === 'EEXIST')
    return new EdgeguardError('EG_EXISTS', `${path} already exists; remove it or pass --force.`, { cause: e });
  if (code === 'EACCES' || code === 'EPERM')
    return new EdgeguardError('EG_IO', `permission denied while trying to ${action} ${path}.`, { cause: e });
  return new EdgeguardError('EG_IO', `could not ${action} ${path} (${code ?? 'unknown error'}).`, { cause: e });
}

export { FILE_CAPS, readBounded, readBoundedSync, readBoundedText, readBoundedTextSync } from './read-bounded.ts';
