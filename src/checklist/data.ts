/**
 * EG-05 (no inference input on disk: the review spool holds only sealed EGRV items, and no file
 * shaped like an input lies under the agent's directories) and EG-08 (the input guard is configured
 * with a calibrated profile).
 */
import { readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { FILE_CAPS, isEdgeguardError, readBounded } from '../errors/index.ts';
import { MAX_SEALED_BYTES, parseReviewItem, SPOOL_SUFFIX } from '../fleet/index.ts';
import { parseProfile } from '../guard/index.ts';
import { modelPaths } from './keys-and-models.ts';
import { inputKindOf, readHead, sha256File, sha256Hex, walkFiles } from './evidence.ts';
import { combine, type CheckDefinition, type ChecklistTarget, type Evidence } from './types.ts';

/** Directories the agent writes to or reads from: where an input copy would end up. */
function agentDirs(target: ChecklistTarget): string[] {
  const c = target.config;
  return [
    dirname(target.configPath),
    target.deviceDir,
    c.review.spool.dir,
    ...modelPaths(target).map((p) => dirname(p)),
    ...(c.journal.path ? [dirname(c.journal.path)] : []),
  ];
}

async function checkSpool(dir: string, fails: string[], evidence: Evidence[]): Promise<number> {
  const names = (await readdir(dir).catch(() => [] as string[])).sort();
  let sealed = 0;
  for (const name of names) {
    const path = join(dir, name);
    if (!name.endsWith(SPOOL_SUFFIX)) {
      fails.push(`the review spool holds ${name}, which is not a sealed item`);
      continue;
    }
    try {
      parseReviewItem(await readBounded(path, MAX_SEALED_BYTES, 'read the review item'), path);
      sealed++;
    } catch (e) {
      if (!isEdgeguardError(e)) throw e;
      fails.push(`${name} in the review spool is not a sealed item (${e.code})`);
    }
  }
  evidence.push({ name: 'review spool listing sha256', value: sha256Hex(names.join('\n')), path: dir });
  return sealed;
}

export const inputNeverOnDisk: CheckDefinition = {
  id: 'EG-05',
  title: 'inference input never written to disk in plaintext',
  audit:
    "every file in the review spool parses as a sealed EGRV item; no PNG, JPEG or NumPy file under the agent's directories (config, device, spool, models, journal)",
  expected: 'only sealed .egr items in the spool; no input-shaped file',
  remediation:
    'delete the plaintext input files and find what wrote them (the agent never does); leave the spool to the agent',
  async run(target) {
    const evidence: Evidence[] = [];
    const fails: string[] = [];
    const sealed = await checkSpool(target.config.review.spool.dir, fails, evidence);
    const { files, truncated } = await walkFiles(agentDirs(target));
    for (const file of files) {
      const kind = inputKindOf((await readHead(file, 16).catch(() => ({ head: Buffer.alloc(0) }))).head);
      if (!kind) continue;
      fails.push(`${kind} on disk: ${file}`);
      evidence.push({ name: 'input-shaped file sha256', value: await sha256File(file), path: file });
    }
    const warns = truncated ? [`only the first ${files.length} files were scanned`] : [];
    const passes = [`${sealed} sealed review item(s), ${files.length} files scanned, no input-shaped file`];
    return { ...combine({ fails, warns, passes }), evidence };
  },
};

export const guardCalibrated: CheckDefinition = {
  id: 'EG-08',
  title: 'adversarial input guard configured and calibrated',
  audit: "agent.yaml's guard section and the calibrated profile it names (parsed, digest)",
  expected: 'a guard profile written by edgeguard guard calibrate, and an ensemble model',
  remediation:
    'edgeguard guard calibrate --pub publisher.pub ... -o profile.json, then guard: { profile: profile.json } and models.ensemble in agent.yaml',
  async run(target) {
    const c = target.config;
    const evidence: Evidence[] = [{ name: 'guard configuration sha256', value: sha256Hex(JSON.stringify(c.guard)) }];
    const fails: string[] = [];
    const warns: string[] = [];
    const passes: string[] = [];
    if (!c.models.ensemble) warns.push('no ensemble model: disagreement between architectures is not checked');
    if (!c.guard.profile) warns.push('no calibrated profile: the guard runs on built-in thresholds');
    else {
      try {
        const bytes = await readBounded(c.guard.profile, FILE_CAPS.config, 'read the guard profile');
        const profile = parseProfile(bytes, c.guard.profile);
        evidence.push({ name: 'guard profile sha256', value: sha256Hex(bytes), path: c.guard.profile });
        passes.push(`calibrated profile version ${profile.version} (${c.guard.profile})`);
      } catch (e) {
        if (!isEdgeguardError(e)) throw e;
        fails.push(`the guard profile cannot be used: ${e.code}: ${e.message}`);
      }
    }
    return { ...combine({ fails, warns, passes }), evidence };
  },
};
