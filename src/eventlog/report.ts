/**
 * One description of a log for people and programs: its events, the PCRs it replays to per bank,
 * the Secure Boot state and the boot components, all with digests as hex. The CLI prints it; a
 * verifier can store it beside a verdict.
 */
import { HASH_ALGS } from '../tpm/index.ts';
import { extractBootComponents, type BootComponent } from './boot-components.ts';
import { eventTypeName } from './event-types.ts';
import { logBanks, type EventLog } from './parse.ts';
import { replayEventLog } from './replay.ts';
import { deriveSecureBootState, type Finding, type SecureBootState } from './secure-boot.ts';

export interface EventLogReport {
  format: EventLog['format'];
  banks: string[];
  events: Array<{ sequence: number; pcr: number; type: string; size: number; digests: Record<string, string> }>;
  /** Bank name -> PCR index -> hex. */
  pcrs: Record<string, Record<number, string>>;
  secureBoot: Omit<SecureBootState, 'findings'>;
  bootComponents: BootComponent[];
  findings: Finding[];
}

const bankName = (alg: number) => HASH_ALGS[alg]?.name ?? `0x${alg.toString(16).padStart(4, '0')}`;

export function eventLogReport(log: EventLog): EventLogReport {
  const { findings: secureBootFindings, ...secureBoot } = deriveSecureBootState(log);
  const boot = extractBootComponents(log);
  const pcrs: EventLogReport['pcrs'] = {};
  for (const [bank, values] of Object.entries(replayEventLog(log)))
    pcrs[bank] = Object.fromEntries(Object.entries(values).map(([i, v]) => [Number(i), v.toString('hex')]));
  return {
    format: log.format,
    banks: logBanks(log).map(bankName),
    events: log.events.map((e) => ({
      sequence: e.sequence,
      pcr: e.pcr,
      type: eventTypeName(e.type),
      size: e.data.length,
      digests: Object.fromEntries(e.digests.map((d) => [bankName(d.alg), d.digest.toString('hex')])),
    })),
    pcrs,
    secureBoot,
    bootComponents: boot.components,
    findings: [...secureBootFindings, ...boot.findings],
  };
}

/** The report as lines for a terminal. */
export function formatEventLogReport(r: EventLogReport): string[] {
  const sb = r.secureBoot;
  return [
    `${r.format} event log, banks ${r.banks.join(', ')}, ${r.events.length} events`,
    ...r.events.map(
      (e) => `  #${e.sequence} PCR ${e.pcr} ${e.type} (${e.size} bytes) ${Object.values(e.digests)[0] ?? ''}`,
    ),
    'replayed PCRs:',
    ...Object.entries(r.pcrs).flatMap(([bank, values]) =>
      Object.entries(values).map(([i, v]) => `  ${bank}:${i.padEnd(2)} ${v}`),
    ),
    `Secure Boot: ${sb.enabled ? 'enabled' : 'disabled'}; separator ${sb.separator ? 'present' : 'MISSING'}`,
    ...(['PK', 'KEK', 'db', 'dbx'] as const).map(
      (v) => `  ${v.padEnd(4)} ${sb.variables[v]?.sha256 ?? '(not measured)'}`,
    ),
    `  db entries ${sb.db.length}, dbx entries ${sb.dbx.length}, authorities ${sb.authorities.map((a) => a.name).join(', ') || 'none'}`,
    'boot components:',
    ...r.bootComponents
      .filter((c) => c.kind !== 'file')
      .map((c) => `  ${c.kind.padEnd(10)} PCR ${c.pcr} ${c.digest} ${c.label.slice(0, 80)}`),
    ...(r.findings.length === 0
      ? ['findings: none']
      : ['findings:', ...r.findings.map((f) => `  ${f.code} PCR ${f.pcr} event ${f.sequence ?? '-'}: ${f.detail}`)]),
  ];
}
