/**
 * Secure Boot state from the PCR 7 events (TCG PC Client Platform Firmware Profile 1.05, 3.3.4.8
 * "PCR[7] Logging": the SecureBoot, PK, KEK, db and dbx variables as EV_EFI_VARIABLE_DRIVER_CONFIG,
 * an EV_SEPARATOR, then EV_EFI_VARIABLE_AUTHORITY for each db entry that verified an image).
 * Only digests are trusted: an event is read as a variable only if its data is a UEFI_VARIABLE_DATA
 * that hashes to its digests, and as a separator only if its four bytes do; the label must agree
 * with what the digest proves, or the event is reported as relabelled.
 */
import { isEdgeguardError } from '../errors/index.ts';
import { digestOf } from './digest.ts';
import { EV } from './event-types.ts';
import type { EventLog, LogEvent } from './parse.ts';
import {
  EFI_GLOBAL_VARIABLE,
  EFI_IMAGE_SECURITY_DATABASE,
  parseSignatureDatabase,
  parseUefiVariableData,
  type SignatureEntry,
  type UefiVariableData,
} from './uefi.ts';
import { digestsMatch } from './verify-digest.ts';

export const SECURE_BOOT_PCR = 7;

export type FindingCode =
  | 'EVENT_UNVERIFIED'
  | 'EVENT_RELABELLED'
  | 'EVENT_NOT_ALLOWED'
  | 'VARIABLE_DUPLICATED'
  | 'VARIABLE_MALFORMED'
  | 'SEPARATOR_MISSING'
  | 'SEPARATOR_ERROR'
  | 'DEBUG_MODE';

/** Something in the log that a verifier should not accept, with the event it is about. */
export interface Finding {
  code: FindingCode;
  pcr: number;
  sequence?: number;
  detail: string;
}

export interface MeasuredVariable {
  sequence: number;
  /** SHA-256 of the variable's value (not of the event), so policies survive a change of bank. */
  sha256: string;
}

export interface SecureBootState {
  /** The SecureBoot variable's value was 1; false when 0 or absent. */
  enabled: boolean;
  variables: Partial<Record<'SecureBoot' | 'PK' | 'KEK' | 'db' | 'dbx', MeasuredVariable>>;
  /** Entries of db and dbx, each named by SHA-256 (of the certificate, or the hash itself). */
  db: SignatureEntry[];
  dbx: SignatureEntry[];
  separator: boolean;
  /** EV_EFI_VARIABLE_AUTHORITY after the separator: which db entry (or shim's MOK) verified an image. */
  authorities: Array<MeasuredVariable & { name: string }>;
  findings: Finding[];
}

const POLICY_VARIABLES: Record<string, string> = {
  SecureBoot: EFI_GLOBAL_VARIABLE,
  PK: EFI_GLOBAL_VARIABLE,
  KEK: EFI_GLOBAL_VARIABLE,
  db: EFI_IMAGE_SECURITY_DATABASE,
  dbx: EFI_IMAGE_SECURITY_DATABASE,
};
type PolicyVariable = keyof SecureBootState['variables'];

const SEPARATOR_OK = Buffer.alloc(4);
const SEPARATOR_ERROR = Buffer.alloc(4, 0xff);

function readVariable(event: LogEvent): UefiVariableData | undefined {
  if (event.data.length < 32) return undefined;
  try {
    return parseUefiVariableData(event.data);
  } catch (e) {
    if (isEdgeguardError(e, 'EG_EVENTLOG_MALFORMED')) return undefined;
    throw e;
  }
}

export function deriveSecureBootState(log: EventLog): SecureBootState {
  const state: SecureBootState = {
    enabled: false,
    variables: {},
    db: [],
    dbx: [],
    separator: false,
    authorities: [],
    findings: [],
  };
  const note = (code: FindingCode, event: LogEvent | undefined, detail: string) =>
    state.findings.push({ code, pcr: SECURE_BOOT_PCR, sequence: event?.sequence, detail });
  for (const event of log.events) {
    if (event.pcr !== SECURE_BOOT_PCR || event.type === EV.NO_ACTION) continue;
    if (!digestsMatch(event)) {
      note('EVENT_UNVERIFIED', event, 'its data does not hash to its digest, so what it measured is unknown');
      continue;
    }
    const variable = readVariable(event);
    if (variable) readVariableEvent(state, event, variable, note);
    else if (event.data.equals(SEPARATOR_OK) || event.data.equals(SEPARATOR_ERROR)) readSeparator(state, event, note);
    else if (event.type === EV.EFI_ACTION && event.data.toString('latin1') === 'UEFI Debug Mode')
      note('DEBUG_MODE', event, 'the firmware ran in UEFI debug mode, which does not enforce Secure Boot');
    else note('EVENT_NOT_ALLOWED', event, 'PCR 7 holds only Secure Boot variables, the separator and authorities');
  }
  if (!state.separator) note('SEPARATOR_MISSING', undefined, 'PCR 7 has no separator; the log is incomplete');
  return state;
}

type Note = (code: FindingCode, event: LogEvent | undefined, detail: string) => void;

function readVariableEvent(state: SecureBootState, event: LogEvent, v: UefiVariableData, note: Note): void {
  const expectedType = state.separator ? EV.EFI_VARIABLE_AUTHORITY : EV.EFI_VARIABLE_DRIVER_CONFIG;
  if (event.type !== expectedType) {
    note('EVENT_RELABELLED', event, `it measured the variable ${v.name} but is labelled as another event type`);
    return;
  }
  const measured = { sequence: event.sequence, sha256: digestOf('sha256', v.value).toString('hex') };
  if (state.separator) {
    state.authorities.push({ ...measured, name: v.name });
    return;
  }
  const name = v.name as PolicyVariable;
  if (POLICY_VARIABLES[name] !== v.guid) return;
  if (state.variables[name]) note('VARIABLE_DUPLICATED', event, `${v.name} is measured twice`);
  state.variables[name] = measured;
  if (name === 'SecureBoot') state.enabled = v.value.length === 1 && v.value[0] === 1;
  if (name === 'db' || name === 'dbx') readSignatureDatabase(state, name, event, v.value, note);
}

function readSignatureDatabase(
  state: SecureBootState,
  name: 'db' | 'dbx',
  event: LogEvent,
  value: Buffer,
  note: Note,
): void {
  try {
    state[name] = parseSignatureDatabase(value);
  } catch (e) {
    if (!isEdgeguardError(e, 'EG_EVENTLOG_MALFORMED')) throw e;
    note('VARIABLE_MALFORMED', event, `${name} is not a list of EFI signature lists: ${e.message}`);
  }
}

function readSeparator(state: SecureBootState, event: LogEvent, note: Note): void {
  if (event.type !== EV.SEPARATOR) note('EVENT_RELABELLED', event, 'it measured a separator under another label');
  else if (event.data.equals(SEPARATOR_ERROR)) note('SEPARATOR_ERROR', event, 'the firmware logged an error separator');
  else if (state.separator) note('EVENT_NOT_ALLOWED', event, 'PCR 7 has a second separator');
  else state.separator = true;
}
