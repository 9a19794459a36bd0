/**
 * `edgeguard harden check`: what must hold on this machine for the generated egress rules and the
 * boot chain to mean anything. Each check reports ok or warn with a sentence saying what to do;
 * a check that cannot tell is a warning, never an ok.
 */
import { constants } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { isEdgeguardError } from '../errors/index.ts';
import { kernelModuleAvailability, type ModuleAvailability } from './kernel-modules.ts';
import { readEgressTableState } from './nft-state.ts';
import { readSecureBootState } from './secure-boot.ts';

export type HardeningCheck = 'nftables' | 'egress-rules' | 'ipset-modules' | 'k3s-network-policy' | 'secure-boot';

export interface HardeningFinding {
  check: HardeningCheck;
  status: 'ok' | 'warn';
  message: string;
  details?: Record<string, unknown>;
}

export interface HardeningReport {
  ok: boolean;
  findings: HardeningFinding[];
}

/** kube-router, K3s's NetworkPolicy controller, matches pods through ipset sets (iptables -m set). */
export const KUBE_ROUTER_MODULES = ['ip_set', 'xt_set'];

const BINARY_DIRS = ['usr/local/sbin', 'usr/local/bin', 'usr/sbin', 'usr/bin', 'sbin', 'bin'];

function isExecutable(path: string): Promise<boolean> {
  return access(path, constants.X_OK).then(
    () => true,
    () => false,
  );
}

/** The first executable `name` in the usual binary directories under `root`. */
export async function findExecutable(root: string, name: string): Promise<string | undefined> {
  for (const dir of BINARY_DIRS) if (await isExecutable(join(root, dir, name))) return join(root, dir, name);
  return undefined;
}

function checkNft(nft: string | undefined): HardeningFinding {
  return nft
    ? { check: 'nftables', status: 'ok', message: `nft is installed (${nft}).`, details: { path: nft } }
    : {
        check: 'nftables',
        status: 'warn',
        message:
          'nft is not installed, so the egress rule set cannot be loaded: install nftables (apt-get install nftables).',
      };
}

/** The running kernel's rules: only meaningful when inspecting this machine, not an image. */
async function checkEgressRules(nft: string): Promise<HardeningFinding> {
  const warn = (message: string): HardeningFinding => ({ check: 'egress-rules', status: 'warn', message });
  try {
    const state = await readEgressTableState(nft);
    if (state.status === 'loaded')
      return {
        check: 'egress-rules',
        status: 'ok',
        message: `the egress rule set is loaded (${state.droppedPackets} packets dropped so far).`,
        details: state,
      };
    if (state.status === 'absent')
      return warn(
        'the egress rule set is not loaded: edgeguard harden egress --format nftables -o egress.nft, then nft -f egress.nft.',
      );
    return warn(`the egress rule set cannot be confirmed: ${state.reason}.`);
  } catch (e) {
    if (!isEdgeguardError(e)) throw e;
    return warn(`the egress rule set cannot be confirmed: ${e.message}`);
  }
}

async function checkIpsetModules(root: string): Promise<HardeningFinding> {
  const modules = await kernelModuleAvailability(KUBE_ROUTER_MODULES, root);
  const missing = Object.entries(modules)
    .filter(([, a]: [string, ModuleAvailability]) => a === 'missing')
    .map(([name]) => name);
  if (missing.length === 0)
    return {
      check: 'ipset-modules',
      status: 'ok',
      message: `the ipset kernel modules kube-router needs are available (${KUBE_ROUTER_MODULES.join(', ')}).`,
      details: { modules },
    };
  return {
    check: 'ipset-modules',
    status: 'warn',
    message: `kernel module${missing.length > 1 ? 's' : ''} ${missing.join(', ')} not found: K3s's kube-router then enforces no NetworkPolicy at all, silently; use a kernel with CONFIG_IP_SET and CONFIG_NETFILTER_XT_SET, or rely on the nftables rule set.`,
    details: { modules },
  };
}

/** K3s started with --disable-network-policy (or its config-file form) runs no policy controller. */
async function checkK3sConfig(root: string): Promise<HardeningFinding | undefined> {
  const file = join(root, 'etc', 'rancher', 'k3s', 'config.yaml');
  const text = await readFile(file, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  let config: unknown;
  try {
    config = parseYaml(text, { maxAliasCount: 16 });
  } catch {
    return { check: 'k3s-network-policy', status: 'warn', message: `${file} is not valid YAML; cannot tell.` };
  }
  const disabled = (config as Record<string, unknown> | null)?.['disable-network-policy'] === true;
  return disabled
    ? {
        check: 'k3s-network-policy',
        status: 'warn',
        message: `${file} sets disable-network-policy: true, so K3s enforces no NetworkPolicy; remove it and restart k3s.`,
      }
    : { check: 'k3s-network-policy', status: 'ok', message: `K3s's network policy controller is enabled (${file}).` };
}

async function checkSecureBoot(root: string): Promise<HardeningFinding> {
  const warn = (message: string, details?: Record<string, unknown>): HardeningFinding => ({
    check: 'secure-boot',
    status: 'warn',
    message,
    ...(details ? { details } : {}),
  });
  try {
    const state = await readSecureBootState(root);
    if (state.status === 'not-uefi')
      return warn('the machine did not boot through UEFI (no /sys/firmware/efi), so there is no secure boot.', state);
    if (state.status === 'unreadable') return warn(`secure boot state unknown: ${state.reason}.`, state);
    if (!state.secureBoot)
      return warn(
        'secure boot is off: the firmware starts unsigned boot loaders; enable it in the firmware setup.',
        state,
      );
    if (state.setupMode)
      return warn('the firmware is in setup mode: anyone can enroll a platform key; enroll yours to leave it.', state);
    return { check: 'secure-boot', status: 'ok', message: 'secure boot is on (user mode).', details: state };
  } catch (e) {
    if (!isEdgeguardError(e)) throw e;
    return warn(`secure boot state unknown: ${e.message}`, { code: e.code });
  }
}

/**
 * `root` is the filesystem root to inspect: `/`, or a mounted device image (then the loaded rules,
 * which live in the running kernel, are not checked).
 */
export async function checkHardening(root = '/'): Promise<HardeningReport> {
  const nft = await findExecutable(root, 'nft');
  const k3s = await checkK3sConfig(root);
  const findings = [
    checkNft(nft),
    ...(nft && resolve(root) === '/' ? [await checkEgressRules(nft)] : []),
    await checkIpsetModules(root),
    ...(k3s ? [k3s] : []),
    await checkSecureBoot(root),
  ];
  return { ok: findings.every((f) => f.status === 'ok'), findings };
}
