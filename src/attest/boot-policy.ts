/**
 * The measured-boot policy an operator keeps per device or group (YAML, validated here): which PCRs
 * a quote must cover, Secure Boot and its key databases, the boot components allowed, and optional
 * exact PCR values. Made from a known-good device's log (createBootPolicy, as Keylime's
 * create_mb_policy does), then edited by hand to allow the next kernel.
 */
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { z } from 'zod';
import { EdgeguardError } from '../errors/index.ts';
import {
  deriveSecureBootState,
  extractBootComponents,
  GRUB_COMMAND_PCR,
  GRUB_FILE_PCR,
  IMAGE_PCR,
  logBanks,
  replayEventLog,
  SECURE_BOOT_PCR,
  type ComponentKind,
  type EventLog,
} from '../eventlog/index.ts';
import { HASH_ALGS, TPM_ALG, formatPcrSelection, parsePcrSelection, type PcrSelection } from '../tpm/index.ts';

const digest = z.string().regex(/^([0-9a-f]{40}|[0-9a-f]{64}|[0-9a-f]{96}|[0-9a-f]{128})$/, 'a lowercase hex digest');
const digests = z.array(digest).max(10_000);

export const bootPolicySchema = z
  .object({
    version: z.literal(1),
    /** The PCRs the quote must cover, tpm2-tools form (sha256:0,1,...,9). */
    pcrs: z.string(),
    secureBoot: z
      .object({
        required: z.boolean(),
        pk: digests.optional(),
        kek: digests.optional(),
        db: digests.optional(),
        dbxMustContain: digests.optional(),
      })
      .strict()
      .optional(),
    bootComponents: z
      .object({
        shim: digests.optional(),
        bootloader: digests.optional(),
        kernel: digests.optional(),
        initrd: digests.optional(),
        cmdline: digests.optional(),
        /** Other files GRUB read (grub.cfg, grubenv): with kernel and initrd, every PCR 9 digest must be listed. */
        files: digests.optional(),
      })
      .strict()
      .optional(),
    /** Bank -> PCR index -> hex value the quoted PCR must hold. */
    exactPcrs: z.record(z.string(), z.record(z.string().regex(/^\d{1,2}$/), digest)).optional(),
  })
  .strict();

export type BootPolicy = z.infer<typeof bootPolicySchema>;

function policyError(where: string, detail: string): EdgeguardError {
  return new EdgeguardError('EG_ATTEST_POLICY', `${where} is not a valid boot policy: ${detail}.`);
}

/** The PCRs the policy's own checks read, which the quote must therefore bind. */
export function pcrsPolicyReads(policy: BootPolicy): number[] {
  const out = new Set<number>();
  if (policy.secureBoot) out.add(SECURE_BOOT_PCR);
  const c = policy.bootComponents;
  if (c?.shim || c?.bootloader || c?.kernel) out.add(IMAGE_PCR);
  if (c?.cmdline) out.add(GRUB_COMMAND_PCR);
  if (c?.kernel || c?.initrd || c?.files) out.add(GRUB_FILE_PCR);
  for (const bank of Object.values(policy.exactPcrs ?? {})) for (const i of Object.keys(bank)) out.add(Number(i));
  return [...out].sort((a, b) => a - b);
}

export function validateBootPolicy(value: unknown, where = 'the boot policy'): BootPolicy {
  const r = bootPolicySchema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw policyError(where, `${issue?.path.join('.') || 'the top level'}: ${issue?.message ?? 'schema mismatch'}`);
  }
  const policy = r.data;
  let selection: PcrSelection;
  try {
    selection = parsePcrSelection(policy.pcrs);
  } catch (e) {
    throw policyError(where, `pcrs: ${(e as Error).message}`);
  }
  const covered = new Set(selection.flatMap((b) => b.pcrs));
  const missing = pcrsPolicyReads(policy).filter((p) => !covered.has(p));
  if (missing.length > 0)
    throw policyError(
      where,
      `pcrs must cover PCR ${missing.join(', ')}, which its checks read; the log is bound only there`,
    );
  for (const bank of Object.keys(policy.exactPcrs ?? {}))
    if (!Object.values(HASH_ALGS).some((h) => h.name === bank))
      throw policyError(where, `exactPcrs: unknown bank ${bank}`);
  return policy;
}

export function parseBootPolicyYaml(text: string, where = 'the boot policy'): BootPolicy {
  let value: unknown;
  try {
    value = parseYaml(text, { maxAliasCount: 16 });
  } catch (e) {
    throw policyError(where, `not YAML (${(e as Error).message.split('\n')[0]})`);
  }
  return validateBootPolicy(value, where);
}

export function formatBootPolicyYaml(policy: BootPolicy): string {
  return stringifyYaml(policy, { lineWidth: 0 });
}

export interface CreateBootPolicyOptions {
  /** Also pin every replayed PCR value (brittle: any firmware or grub.cfg change breaks it). */
  exactPcrs?: boolean;
}

const unique = (xs: string[]) => [...new Set(xs)];

/** A policy that the device which produced `log` satisfies, and that a different boot does not. */
export function createBootPolicy(log: EventLog, opts: CreateBootPolicyOptions = {}): BootPolicy {
  const state = deriveSecureBootState(log);
  const { components } = extractBootComponents(log);
  const of = (kind: ComponentKind) => unique(components.filter((c) => c.kind === kind).map((c) => c.digest));
  const alg = logBanks(log).includes(TPM_ALG.SHA256) ? TPM_ALG.SHA256 : logBanks(log)[0]!;
  const bank = HASH_ALGS[alg];
  if (!bank) throw policyError('the log', 'it measures no PCR bank edgeguard can compute');
  const replayed = replayEventLog(log)[bank.name] ?? {};
  const touched = Object.keys(replayed)
    .map(Number)
    .sort((a, b) => a - b);
  const policy: BootPolicy = {
    version: 1,
    pcrs: formatPcrSelection([{ hashAlg: alg, pcrs: touched }]),
    secureBoot: {
      required: state.enabled,
      ...(state.variables.PK ? { pk: [state.variables.PK.sha256] } : {}),
      ...(state.variables.KEK ? { kek: [state.variables.KEK.sha256] } : {}),
      ...(state.variables.db ? { db: [state.variables.db.sha256] } : {}),
      dbxMustContain: unique(state.dbx.map((e) => e.sha256)),
    },
    bootComponents: {
      shim: of('shim'),
      bootloader: of('bootloader'),
      kernel: of('kernel'),
      initrd: of('initrd'),
      cmdline: of('cmdline'),
      files: of('file'),
    },
  };
  if (opts.exactPcrs)
    policy.exactPcrs = {
      [bank.name]: Object.fromEntries(touched.map((i) => [String(i), replayed[i]!.toString('hex')])),
    };
  return validateBootPolicy(policy, 'the policy made from the log');
}
