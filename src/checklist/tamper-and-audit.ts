/**
 * EG-09 (physical tamper detection) and EG-10 (the device journal is tamper-evident: its hash chain
 * and every signature verify under the device certificate's key).
 */
import { readFile } from 'node:fs/promises';
import { checkJournalBytes } from '../audit/index.ts';
import { FILE_CAPS, isEdgeguardError, readBounded } from '../errors/index.ts';
import { lockStatePath, readLockState } from '../tamper/index.ts';
import { deviceCertificate } from './network.ts';
import { sha256Hex } from './evidence.ts';
import type { CheckDefinition, CheckOutcome, ChecklistTarget, Evidence } from './types.ts';

export const tamperDetection: CheckDefinition = {
  id: 'EG-09',
  title: 'physical tamper detection',
  audit: `the tamper lock state in the device directory; whether the agent runs tamper sensors`,
  expected: 'tamper sensors armed by the agent, and the device not locked by a past finding',
  remediation:
    'a locked device stays locked until it is re-provisioned (edgeguard device reprovision); configure sensors in the tamper: section of agent.yaml',
  async run(target) {
    const path = lockStatePath(target.deviceDir);
    try {
      const state = await readLockState(target.deviceDir);
      if (state)
        return {
          status: 'FAIL',
          actual: `the device is locked after a tamper finding (${JSON.stringify(state)})`,
          evidence: [
            {
              name: 'lock state sha256',
              value: sha256Hex(await readBounded(path, FILE_CAPS.config, 'read the lock state')),
              path,
            },
          ],
          remediation: 'inspect the device, then re-provision it; a locked device must not be trusted',
        };
    } catch (e) {
      if (!isEdgeguardError(e)) throw e;
      return { status: 'FAIL', actual: `the lock state is damaged: ${e.message}`, evidence: [] };
    }
    const sensors = target.config.tamper?.sensors ?? [];
    if (target.config.tamper && sensors.length > 0)
      return {
        status: 'PASS',
        actual: `not locked; the agent arms ${sensors.length} tamper sensor(s): ${sensors.map((x) => `${x.kind} ${x.name}`).join(', ')}`,
        evidence: [
          { name: 'lock state', value: 'none', path },
          { name: 'tamper configuration sha256', value: sha256Hex(Buffer.from(JSON.stringify(target.config.tamper))) },
        ],
      };
    return {
      status: 'NOT-AVAILABLE',
      actual: 'not locked; agent.yaml configures no tamper sensors, so nothing would detect an opened case',
      evidence: [{ name: 'lock state', value: 'none', path }],
      remediation:
        'add a tamper: section to agent.yaml (a case switch, the chassis-intrusion alarm or an accelerometer; README, "Physical tamper")',
    };
  },
};

async function journalOutcome(target: ChecklistTarget, path: string): Promise<CheckOutcome> {
  const evidence: Evidence[] = [];
  const bytes = await readFile(path).catch(() => undefined);
  if (!bytes)
    return { status: 'WARN', actual: `no journal yet at ${path}: the agent has not recorded anything`, evidence };
  evidence.push({ name: 'journal sha256', value: sha256Hex(bytes), path });
  const cert = await deviceCertificate(target);
  if (!cert)
    return { status: 'FAIL', actual: 'the device certificate that signs the journal cannot be read', evidence };
  const { entries, gaps, head } = checkJournalBytes(bytes, cert.publicKey);
  evidence.push({ name: 'journal head (seq, entry hash)', value: `${head.seq} ${head.hash.toString('hex')}` });
  evidence.push({ name: 'control-plane checkpoint', value: 'not checked on the device (no --server)' });
  if (gaps.length)
    return {
      status: 'FAIL',
      actual: `${gaps.length} break(s) in the chain: ${gaps.map((g) => g.reason).join('; ')}`,
      evidence,
      remediation:
        'the journal was altered or entries were removed: keep the file for investigation, compare with the control plane (edgeguard audit verify), re-provision the device',
    };
  return { status: 'PASS', actual: `${entries.length} entries, chain and signatures intact`, evidence };
}

export const auditTamperEvident: CheckDefinition = {
  id: 'EG-10',
  title: 'audit log tamper-evident',
  audit:
    "the device journal (agent.yaml's journal): every entry's signature under the device certificate key, seq and prev-hash chain",
  expected: 'journal enabled, every entry signed and chained, no gap',
  remediation: 'configure upload (the journal is signed with the device certificate key) and leave journal enabled',
  async run(target) {
    const { journal, upload } = target.config;
    if (journal.enabled === false || !upload || !journal.path)
      return {
        status: 'FAIL',
        actual: journal.enabled === false ? 'the journal is disabled' : 'no journal: agent.yaml has no upload section',
        evidence: [],
      };
    return journalOutcome(target, journal.path);
  },
};
