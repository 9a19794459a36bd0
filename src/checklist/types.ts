/** The checklist's vocabulary: one result per item, what a device's configuration must provide. */

export const CHECK_STATUSES = ['PASS', 'FAIL', 'WARN', 'NOT-APPLICABLE', 'NOT-AVAILABLE'] as const;
export type CheckStatus = (typeof CHECK_STATUSES)[number];

/** One piece of evidence: what it is, its value (a digest, a selection, a head), and where it came from. */
export interface Evidence {
  name: string;
  value: string;
  path?: string;
}

export interface CheckResult {
  id: string;
  title: string;
  /** What was checked, in words (kube-bench's `audit`). */
  audit: string;
  status: CheckStatus;
  actual: string;
  expected: string;
  evidence: Evidence[];
  remediation: string;
}

/**
 * The parts of agent.yaml the checks read, paths already resolved (the agent's loadAgentConfig
 * returns this shape; the checklist does not import the agent app).
 */
export interface ChecklistAgentConfig {
  trust: { publicKeys: string[] };
  contentKey: { file: string } | { wrapped: string; device: string };
  models: { primary: string; ensemble?: string; fallback?: string };
  guard: { profile?: string };
  review: { enabled: boolean; publicKey?: string; spool: { dir: string } };
  upload?: { device: string } | { server: string; ca: string; cert: string; key: string };
  journal: { enabled?: boolean; path?: string };
  egress?: unknown;
  /** The tamper: section (sensors the agent arms). */
  tamper?: { sensors: ReadonlyArray<{ kind: string; name: string }> };
  /** The attestation: section (the agent pushes TPM quotes with the event log on a schedule). */
  attestation?: { enabled: boolean; eventLog?: string; intervalMs?: number };
}

/** The control plane's verdict on evidence the device just pushed (src/fleet VerdictResponse). */
export interface AttestationProbeVerdict {
  verdictId: string;
  pass: boolean;
  reasons: ReadonlyArray<{ code: string; detail: string }>;
  trustedUntil?: string | undefined;
}

export interface ChecklistTarget {
  /** The device directory (edgeguard device init). */
  deviceDir: string;
  /** agent.yaml, for its digest; `config` is what it says. */
  configPath: string;
  config: ChecklistAgentConfig;
  /** Filesystem root holding sys/ (efivarfs): `/`, or a directory shaped like one. */
  root: string;
  /** The nft binary to ask for the live rule set, when one is installed. */
  nft?: string;
  /**
   * One attestation round now (nonce, quote, event log, verdict), supplied by the caller when the
   * device is enrolled with attestation on and may reach its control plane; absent offline.
   */
  attest?: () => Promise<AttestationProbeVerdict>;
}

export interface CheckDefinition {
  id: string;
  title: string;
  audit: string;
  expected: string;
  remediation: string;
  run(target: ChecklistTarget): Promise<CheckOutcome>;
}

/** What a check's probe found; the definition supplies the rest. */
export interface CheckOutcome {
  status: CheckStatus;
  actual: string;
  evidence: Evidence[];
  /** Replaces the definition's remediation when the fix depends on what was found. */
  remediation?: string;
}

/** The worst of several findings: any failure fails, any warning warns, else the item passes. */
export function combine(findings: { fails: string[]; warns: string[]; passes: string[] }): {
  status: CheckStatus;
  actual: string;
} {
  const status = findings.fails.length ? 'FAIL' : findings.warns.length ? 'WARN' : 'PASS';
  const lines = [...findings.fails, ...findings.warns, ...findings.passes];
  return { status, actual: lines.join('; ') };
}
