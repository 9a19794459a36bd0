/**
 * The signed form of a checklist report: a DSSE envelope (secure-systems-lab/dsse v1.0, as the
 * model signatures in src/crypto/dsse.ts) whose payload is the report's JSON, signed by the device
 * certificate's key, so it can be uploaded later and checked against that certificate.
 */
import type { KeyObject } from 'node:crypto';
import {
  parseEnvelope,
  signEnvelope,
  verifyEnvelope,
  type DsseEnvelope,
  type SigningKeyPair,
} from '../crypto/index.ts';
import { EdgeguardError } from '../errors/index.ts';
import type { ChecklistReport } from './report.ts';
import { parseChecklistReport } from './report-schema.ts';

export const REPORT_PAYLOAD_TYPE = 'application/vnd.edgeguard.checklist+json';

export function signReport(report: ChecklistReport, deviceKey: SigningKeyPair): DsseEnvelope {
  return signEnvelope(REPORT_PAYLOAD_TYPE, Buffer.from(JSON.stringify(report), 'utf8'), deviceKey);
}

/** The report inside `envelopeText`, once its signature verifies under the device's public key. */
export function verifySignedReport(envelopeText: string, devicePublicKey: KeyObject): ChecklistReport {
  const { payload } = verifyEnvelope(parseEnvelope(envelopeText), [devicePublicKey], REPORT_PAYLOAD_TYPE);
  let report: unknown;
  try {
    report = JSON.parse(payload.toString('utf8'));
  } catch (e) {
    throw new EdgeguardError('EG_FORMAT', 'the signed checklist report is not JSON.', { cause: e });
  }
  return parseChecklistReport(report);
}
