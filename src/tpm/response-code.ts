/**
 * TPM_RC decoding (TCG TPM 2.0 Library Part 2, 6.6 "TPM_RC") and the mapping from a response code
 * to an EdgeguardError a person can act on. tpm2-tools report the code on stderr as
 * `ERROR: Esys_Xxx(0x99D) - ...` or `ErrorCode (0x0000099d)`; TSS layers above the TPM put a layer
 * number in bits 16..23 (7 = ESAPI, 10 = TCTI, the transport).
 */
import { EdgeguardError, type ErrorCode } from '../errors/index.ts';

const RC_VER1 = 0x100;
const RC_FMT1 = 0x080;
const RC_WARN = 0x900;
/** The TSS layer of ESAPI, and its TSS2_BASE_RC_RSP_AUTH_FAILED: a response HMAC that does not verify. */
const ESYS_LAYER = 7;
const RSP_AUTH_FAILED = 0x1b;
export const ESYS_RSP_AUTH_FAILED = 'TSS2_ESYS_RC_RSP_AUTH_FAILED';

const FMT1_NAMES: Record<number, string> = {
  0x01: 'ASYMMETRIC',
  0x02: 'ATTRIBUTES',
  0x03: 'HASH',
  0x04: 'VALUE',
  0x05: 'HIERARCHY',
  0x07: 'KEY_SIZE',
  0x08: 'MGF',
  0x09: 'MODE',
  0x0a: 'TYPE',
  0x0b: 'HANDLE',
  0x0c: 'KDF',
  0x0d: 'RANGE',
  0x0e: 'AUTH_FAIL',
  0x0f: 'NONCE',
  0x10: 'PP',
  0x12: 'SCHEME',
  0x15: 'SIZE',
  0x16: 'SYMMETRIC',
  0x17: 'TAG',
  0x18: 'SELECTOR',
  0x1a: 'INSUFFICIENT',
  0x1b: 'SIGNATURE',
  0x1c: 'KEY',
  0x1d: 'POLICY_FAIL',
  0x1f: 'INTEGRITY',
  0x20: 'TICKET',
  0x21: 'RESERVED_BITS',
  0x22: 'BAD_AUTH',
  0x23: 'EXPIRED',
  0x24: 'POLICY_CC',
  0x25: 'BINDING',
  0x26: 'CURVE',
  0x27: 'ECC_POINT',
};
const VER1_NAMES: Record<number, string> = {
  0x000: 'INITIALIZE',
  0x001: 'FAILURE',
  0x003: 'SEQUENCE',
  0x00b: 'PRIVATE',
  0x019: 'HMAC',
  0x020: 'DISABLED',
  0x021: 'EXCLUSIVE',
  0x024: 'AUTH_TYPE',
  0x025: 'AUTH_MISSING',
  0x026: 'POLICY',
  0x027: 'PCR',
  0x028: 'PCR_CHANGED',
  0x02d: 'UPGRADE',
  0x02e: 'TOO_MANY_CONTEXTS',
  0x02f: 'AUTH_UNAVAILABLE',
  0x030: 'REBOOT',
  0x031: 'UNBALANCED',
  0x042: 'COMMAND_SIZE',
  0x043: 'COMMAND_CODE',
  0x044: 'AUTHSIZE',
  0x045: 'AUTH_CONTEXT',
  0x046: 'NV_RANGE',
  0x047: 'NV_SIZE',
  0x048: 'NV_LOCKED',
  0x049: 'NV_AUTHORIZATION',
  0x04a: 'NV_UNINITIALIZED',
  0x04b: 'NV_SPACE',
  0x04c: 'NV_DEFINED',
  0x050: 'BAD_CONTEXT',
  0x051: 'CPHASH',
  0x052: 'PARENT',
  0x053: 'NEEDS_TEST',
  0x054: 'NO_RESULT',
  0x055: 'SENSITIVE',
};
const WARN_NAMES: Record<number, string> = {
  0x001: 'CONTEXT_GAP',
  0x002: 'OBJECT_MEMORY',
  0x003: 'SESSION_MEMORY',
  0x004: 'MEMORY',
  0x005: 'SESSION_HANDLES',
  0x006: 'OBJECT_HANDLES',
  0x007: 'LOCALITY',
  0x008: 'YIELDED',
  0x009: 'CANCELED',
  0x00a: 'TESTING',
  0x020: 'NV_RATE',
  0x021: 'LOCKOUT',
  0x022: 'RETRY',
  0x023: 'NV_UNAVAILABLE',
};

export interface DecodedRc {
  rc: number;
  /** TSS layer (0 = the TPM itself, 7 = ESAPI, 10 = TCTI transport). */
  layer: number;
  /** `TPM_RC_POLICY_FAIL`, `TPM_RC_OBJECT_MEMORY`, ..., `TSS2_ESYS_RC_RSP_AUTH_FAILED` or `TSS layer N error 0x...`. */
  name: string;
  /** Which handle, parameter or session the format-one code refers to, e.g. "session 1". */
  where?: string;
  /** Worth retrying as is (the TPM said so). */
  retryable: boolean;
  /** Freeing transient objects and sessions would help. */
  resources: boolean;
}

export function decodeResponseCode(rc: number): DecodedRc {
  const layer = (rc >>> 16) & 0xff;
  if (layer !== 0) {
    const rspAuthFailed = layer === ESYS_LAYER && (rc & 0xffff) === RSP_AUTH_FAILED;
    return {
      rc,
      layer,
      name: rspAuthFailed ? ESYS_RSP_AUTH_FAILED : `TSS layer ${layer} error 0x${(rc & 0xffff).toString(16)}`,
      retryable: false,
      resources: false,
    };
  }
  if (rc & RC_FMT1) {
    const num = rc & 0x3f;
    const n = (rc >> 8) & 0xf;
    let where: string | undefined;
    if (rc & 0x40) where = `parameter ${n}`;
    else if (n & 0x8) where = `session ${n & 0x7}`;
    else if (n) where = `handle ${n}`;
    const name = `TPM_RC_${FMT1_NAMES[num] ?? `0x${(RC_FMT1 + num).toString(16)}`}`;
    return { rc, layer, name, ...(where ? { where } : {}), retryable: false, resources: false };
  }
  if ((rc & RC_WARN) === RC_WARN) {
    const num = rc & 0x7f;
    const name = WARN_NAMES[num] ?? (num >= 0x10 && num <= 0x1e ? 'REFERENCE' : `0x${rc.toString(16)}`);
    return {
      rc,
      layer,
      name: `TPM_RC_${name}`,
      retryable: ['YIELDED', 'CANCELED', 'TESTING', 'RETRY', 'NV_RATE', 'CONTEXT_GAP'].includes(name),
      resources: ['OBJECT_MEMORY', 'SESSION_MEMORY', 'MEMORY', 'SESSION_HANDLES', 'OBJECT_HANDLES'].includes(name),
    };
  }
  if (rc & RC_VER1) {
    const num = rc & 0x7f;
    const name = VER1_NAMES[num] ?? `0x${rc.toString(16)}`;
    return {
      rc,
      layer,
      name: `TPM_RC_${name}`,
      retryable: name === 'PCR_CHANGED',
      resources: name === 'TOO_MANY_CONTEXTS',
    };
  }
  return { rc, layer, name: `TPM 1.2 code 0x${rc.toString(16)}`, retryable: false, resources: false };
}

/** Pull the response code out of a tpm2-tools stderr, if it printed one. */
export function responseCodeFromStderr(stderr: string): number | undefined {
  const m = /\(0x([0-9a-fA-F]+)\)\s*-/.exec(stderr) ?? /ErrorCode \(0x([0-9a-fA-F]+)\)/.exec(stderr);
  return m ? parseInt(m[1]!, 16) : undefined;
}

/** The operation, in words, for sentences: "unwrap the content key", "load the binding key". */
export function tpmErrorFor(decoded: DecodedRc, action: string, tool: string): EdgeguardError {
  const n = decoded.name.replace(/^TPM_RC_/, '');
  let code: ErrorCode = 'EG_TPM';
  let sentence: string;
  if (decoded.layer === 10) {
    code = 'EG_TPM_UNAVAILABLE';
    sentence = `could not talk to the TPM to ${action} (transport error ${decoded.name}); check that the TPM (or swtpm) is running and the TCTI is right.`;
  } else if (decoded.name === ESYS_RSP_AUTH_FAILED) {
    // Only the TPM and this process hold a salted session's key: the answer was changed on its way.
    code = 'EG_TAMPERED';
    sentence = `the TPM's answer when asked to ${action} failed its integrity check (the session's response HMAC): something between this process and the TPM changed it, and it is not used. Do not install updates on this device or trust its TPM until its hardware is checked.`;
  } else if (['POLICY_FAIL', 'POLICY_CC', 'EXPIRED', 'PCR_CHANGED', 'PCR'].includes(n)) {
    code = 'EG_TPM_POLICY';
    sentence = `the TPM refused to ${action}: the PCR policy is not satisfied (${decoded.name}), so this device is not running the boot chain the key was bound to. Re-provision the key for the current boot state only if the change is expected.`;
  } else if (n === 'INTEGRITY') {
    code = 'EG_TPM_WRONG_DEVICE';
    sentence = `the TPM refused to ${action}: the key blobs were not made by this TPM (${decoded.name}); a device directory copied from another device cannot be used here.`;
  } else if (
    decoded.resources ||
    ['OBJECT_MEMORY', 'SESSION_MEMORY', 'MEMORY', 'TOO_MANY_CONTEXTS', 'NV_SPACE'].includes(n)
  ) {
    code = 'EG_TPM_RESOURCES';
    sentence = `the TPM ran out of room to ${action} (${decoded.name}); another program may be holding TPM objects or sessions. Use a resource manager (/dev/tpmrm0) or run \`tpm2_flushcontext -t -s\`.`;
  } else if (['AUTH_FAIL', 'BAD_AUTH', 'AUTH_MISSING', 'AUTH_TYPE', 'AUTH_UNAVAILABLE', 'LOCKOUT'].includes(n)) {
    code = 'EG_TPM_AUTH';
    sentence =
      n === 'LOCKOUT'
        ? `the TPM is in dictionary-attack lockout and refused to ${action}; wait for the lockout to expire or reset it with the lockout authorization.`
        : `the TPM refused the authorization to ${action} (${decoded.name}); check the hierarchy or key passwords.`;
  } else {
    sentence = `the TPM failed to ${action} (${decoded.name}${decoded.where ? ` on ${decoded.where}` : ''}, from ${tool}).`;
  }
  return new EdgeguardError(code, sentence, {
    details: { tpmRc: `0x${decoded.rc.toString(16)}`, tpmRcName: decoded.name, tool },
  });
}
