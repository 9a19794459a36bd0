/**
 * Content key unwrap latency, median of N (default 20), through the key store a device uses:
 *   - tpm provider against swtpm (a fresh one started here, or --tcti for a real TPM): SRK
 *     recreation, load of the binding key, PolicyPCR session, RSA-OAEP decrypt, flushes; each a
 *     tpm2-tools process;
 *   - baseline measured in the same run: the software provider (RSA-OAEP decrypt in Node);
 *   - the identity key (no PCR policy; what the fleet TLS key is wrapped to);
 *   - a binding key under the authorized policy (device init --pcr-policy-key): on its provisioned
 *     PCRs (PCR read + PolicyPCR + PolicyOR), then after a PCR change with a signed authorization
 *     (+ LoadExternal, VerifySignature, PolicyAuthorize);
 *   - and the floor under the TPM figure: one bare `tpm2_getrandom` round trip (process spawn + TCTI).
 *
 *   node --import tsx bench/tpm-unwrap.ts [--runs 20] [--tcti device:/dev/tpmrm0]
 */
import { execSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { generateContentKey, wipe } from '../src/crypto/index.ts';
import {
  encodeWrappedKeyFile,
  initDevice,
  openDeviceIdentityStore,
  openDeviceKeyStore,
  PCR_AUTHORIZATIONS_DIR,
  parseBindingPublicKey,
  wrapContentKey,
  type KeyStore,
} from '../src/keystore/index.ts';
import {
  TpmClient,
  parsePcrSelection,
  signPcrAuthorization,
  startSwtpm,
  DEFAULT_BINDING_PCRS,
  type Swtpm,
} from '../src/tpm/index.ts';
import { machine } from './lib/machine.ts';

const args = process.argv.slice(2);
const opt = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const RUNS = Number(opt('--runs') ?? 20);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function timeUnwraps(store: KeyStore, text: string, kid: string): Promise<number[]> {
  const times: number[] = [];
  // One warm-up, not counted.
  wipe((await store.unwrapContentKey(text)).bytes);
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    const k = await store.unwrapContentKey(text);
    times.push(performance.now() - t);
    if (k.kid !== kid) throw new Error('unwrapped the wrong key');
    wipe(k.bytes);
  }
  return times;
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'eg-bench-tpm-'));
  let swtpm: Swtpm | undefined;
  try {
    const tcti = opt('--tcti') ?? (swtpm = await startSwtpm()).tcti;
    const key = generateContentKey();
    const results: Array<{ name: string; median: number; min: number; max: number }> = [];
    for (const provider of ['software', 'tpm'] as const) {
      const dir = join(work, provider);
      await initDevice({ dir, ...(provider === 'tpm' ? { tcti } : {}) });
      const text = encodeWrappedKeyFile(
        wrapContentKey(key, parseBindingPublicKey(await readFile(join(dir, 'binding.pub'), 'utf8'))),
      );
      const times = await timeUnwraps(await openDeviceKeyStore(dir), text, key.kid);
      results.push({
        name: provider === 'tpm' ? `tpm (${swtpm ? 'swtpm' : tcti})` : 'software (baseline)',
        median: median(times),
        min: Math.min(...times),
        max: Math.max(...times),
      });
    }
    const stat = (name: string, times: number[]) => ({
      name,
      median: median(times),
      min: Math.min(...times),
      max: Math.max(...times),
    });
    const identity = (await openDeviceIdentityStore(join(work, 'tpm')))!;
    const idText = encodeWrappedKeyFile(wrapContentKey(key, identity.bindingPublicKey));
    results.push(stat('tpm identity key (no policy)', await timeUnwraps(identity, idText, key.kid)));

    const operator = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const authDir = join(work, 'tpm-authorized');
    const pcrPolicyKey = operator.publicKey.export({ type: 'spki', format: 'pem' }).toString();
    await initDevice({ dir: authDir, tcti, pcrPolicyKey });
    const authStore = await openDeviceKeyStore(authDir);
    const authText = encodeWrappedKeyFile(wrapContentKey(key, authStore.bindingPublicKey));
    results.push(stat('tpm authorized, provisioned PCRs', await timeUnwraps(authStore, authText, key.kid)));
    const client = new TpmClient({ tcti });
    await client.extendPcr(4, 'sha256', Buffer.alloc(32, 0x42));
    const selection = parsePcrSelection(DEFAULT_BINDING_PCRS);
    const signed = signPcrAuthorization({
      privateKey: operator.privateKey,
      selection,
      values: await client.readPcrs(selection),
    });
    await writeFile(join(authDir, PCR_AUTHORIZATIONS_DIR, 'next.json'), JSON.stringify(signed));
    results.push(stat('tpm authorized, signed PCRs', await timeUnwraps(authStore, authText, key.kid)));

    const rt: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const t = performance.now();
      await client.getRandom(8);
      rt.push(performance.now() - t);
    }
    results.push({
      name: 'one tpm2_getrandom round trip',
      median: median(rt),
      min: Math.min(...rt),
      max: Math.max(...rt),
    });
    const base = results[0]!.median;
    process.stdout.write(`machine: ${machine()}\n`);
    process.stdout.write(`tpm2-tools: ${execSync('tpm2_getrandom --version', { encoding: 'utf8' }).trim()}\n`);
    process.stdout.write(`unwrap of one content key, ${RUNS} runs after a warm-up:\n`);
    for (const r of results) {
      process.stdout.write(
        `  ${r.name.padEnd(32)} median ${r.median.toFixed(2).padStart(8)} ms  (min ${r.min.toFixed(2)}, max ${r.max.toFixed(2)})  ${(r.median / base).toFixed(1)}x software\n`,
      );
    }
    wipe(key.bytes);
  } finally {
    await swtpm?.remove();
    await rm(work, { recursive: true, force: true });
  }
}

await main();
