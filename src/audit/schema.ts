/**
 * The audit log's tables (created by the store's migration list, src/store/migrations/audit.ts).
 * Hashes are lowercase hex text and leaves UTF-8 text (canonical JSON), so both dialects store
 * and compare them alike.
 *
 *   audit_entries        idx -> leaf                  the log, in sequence order
 *   audit_nodes          (level, idx) -> hash         every complete subtree (level 0 = leaf hash)
 *   audit_state          id = 1 -> size, root         the integrated tree; its row is the sequencer lock
 *   audit_checkpoints    size -> root, signed note    every checkpoint the log signed
 *   audit_device_entries (device_id, seq) -> idx, hash   device journal entries already logged
 *   audit_device_heads   device_id -> seq, hash       each device's journal head, for continuity
 */
export type AuditEntriesTable = {
  idx: number | string;
  leaf: string;
};
export type AuditNodesTable = {
  level: number;
  idx: number | string;
  hash: string;
};
export type AuditStateTable = {
  id: number;
  size: number | string;
  root: string;
  updated_at: string;
};
export type AuditCheckpointsTable = {
  size: number | string;
  root: string;
  note: string;
  created_at: string;
};
export type AuditDeviceEntriesTable = {
  device_id: string;
  seq: number | string;
  idx: number | string;
  hash: string;
};
export type AuditDeviceHeadsTable = {
  device_id: string;
  seq: number | string;
  hash: string;
  updated_at: string;
};

export type AuditTables = {
  audit_entries: AuditEntriesTable;
  audit_nodes: AuditNodesTable;
  audit_state: AuditStateTable;
  audit_checkpoints: AuditCheckpointsTable;
  audit_device_entries: AuditDeviceEntriesTable;
  audit_device_heads: AuditDeviceHeadsTable;
};
