/**
 * Checklist reports between device, control plane and operator (docs/formats.md):
 *
 *   POST /v1/checklist/reports     device  a DSSE envelope (the report signed by the device key)
 *                                          -> ChecklistUploadResponse
 *   GET  /v1/checklist/reports     admin   -> FleetChecklist: every device, its latest score and failures
 *   GET  /v1/devices/:id/checklist admin   -> DeviceChecklist: the stored envelope and its report
 */
import { z } from 'zod';
import type { DsseEnvelope } from '../crypto/index.ts';
import { parseAnswer } from './answer.ts';
import type { FleetClient } from './client.ts';

const itemId = z.string().regex(/^EG-(0[1-9]|10)$/);
const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/);

export const ChecklistUploadResponse = z.strictObject({
  deviceId: z.string(),
  envelopeSha256: sha256Hex,
  score: z.number().int(),
  failing: z.array(itemId),
  receivedAt: z.string(),
});
export type ChecklistUploadResponse = z.infer<typeof ChecklistUploadResponse>;

export const FleetChecklistEntry = z.strictObject({
  deviceId: z.string(),
  label: z.string().optional(),
  status: z.string(),
  /** Absent when the device never uploaded a report. */
  report: z
    .strictObject({
      score: z.number().int(),
      failing: z.array(itemId),
      generatedAt: z.string(),
      receivedAt: z.string(),
      envelopeSha256: sha256Hex,
    })
    .optional(),
});
export const FleetChecklist = z.strictObject({ devices: z.array(FleetChecklistEntry) });
export type FleetChecklist = z.infer<typeof FleetChecklist>;

export const DeviceChecklist = z.strictObject({
  deviceId: z.string(),
  envelopeSha256: sha256Hex,
  receivedAt: z.string(),
  /** The envelope as the device signed it. */
  envelope: z.strictObject({
    payloadType: z.string(),
    payload: z.string(),
    signatures: z.array(z.strictObject({ keyid: z.string().optional(), sig: z.string() })),
  }),
  /** Its payload, parsed (for display; the envelope is the evidence). */
  report: z.record(z.string(), z.unknown()),
});
export type DeviceChecklist = z.infer<typeof DeviceChecklist>;

export async function uploadChecklistReport(
  client: FleetClient,
  envelope: DsseEnvelope,
): Promise<ChecklistUploadResponse> {
  const r = await client.call('POST', '/v1/checklist/reports', envelope);
  return parseAnswer(ChecklistUploadResponse, r.body, 'checklist upload');
}

export async function fetchFleetChecklist(client: FleetClient): Promise<FleetChecklist> {
  const r = await client.call('GET', '/v1/checklist/reports');
  return parseAnswer(FleetChecklist, r.body, 'checklist fleet');
}
