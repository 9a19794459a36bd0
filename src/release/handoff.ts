/**
 * Releases of kind firmware and agent: the same verified path as a model (TUF, OMS signature,
 * header, anti-rollback floor), then the package's payload is decrypted in memory, written to a
 * fresh 0700 directory and handed to the installer command agent.yaml names for the kind (e.g.
 * ["rauc", "install", "{path}"] or ["swupdate", "-i", "{path}"]). The command runs as an argv,
 * never through a shell; "{path}" in any argument becomes the payload's path. The directory is
 * removed when the command ends, whatever its outcome. The installer (RAUC, SWUpdate, a package
 * manager) owns its own A/B switch and rollback; edgeguard raises the floor once it exits 0.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { wipe, writePrivateFile } from '../crypto/index.ts';
import { EdgeguardError } from '../errors/index.ts';
import { decryptPackageToMemory } from '../model/index.ts';
import { resolveContentKey, type ContentKeySource } from '../keystore/index.ts';

export interface HandoffOptions {
  packagePath: string;
  signaturePath: string;
  publicKeys: KeyObject[];
  contentKey: ContentKeySource;
  expect: { name: string; version: number; headerSha256: string };
  /** The installer's argv; "{path}" is replaced by the payload's path. */
  command: readonly string[];
  /** Where the private hand-off directory is made (the agent's data directory). */
  workDir: string;
  timeoutMs?: number;
}

export interface HandoffResult {
  exitCode: number;
  /** The last lines the installer printed on stderr (bounded). */
  stderrTail: string;
}

const DEFAULT_TIMEOUT_MS = 30 * 60_000;

function failed(message: string, cause?: unknown): EdgeguardError {
  return new EdgeguardError('EG_INSTALL_FAILED', `${message}; the device stays on its current release.`, { cause });
}

async function writePayload(dir: string, bytes: Uint8Array): Promise<string> {
  const path = join(dir, 'payload');
  await writePrivateFile(path, bytes);
  return path;
}

export function runInstaller(argv: readonly string[], timeoutMs: number): Promise<HandoffResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], timeout: timeoutMs });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString('utf8')).slice(-4000);
    });
    child.on('error', (e: NodeJS.ErrnoException) =>
      reject(failed(`the installer command ${argv[0]} could not run (${e.code ?? e.message})`, e)),
    );
    child.on('close', (code, signal) => {
      if (code === 0) resolve({ exitCode: 0, stderrTail: stderr });
      else
        reject(
          failed(
            `the installer command ${argv[0]} ${signal ? `was killed by ${signal}` : `exited ${code}`} (${stderr.trim().split('\n').pop()?.slice(0, 300) ?? ''})`,
          ),
        );
    });
  });
}

/** Decrypt, write to a private directory, run the installer, remove the directory. */
export async function handOff(o: HandoffOptions): Promise<HandoffResult> {
  if (o.command.length === 0 || !o.command[0]) throw failed('no installer command is configured for this kind');
  const { key } = await resolveContentKey(o.contentKey);
  let plaintext: Buffer;
  try {
    const dec = await decryptPackageToMemory(o.packagePath, {
      publicKeys: o.publicKeys,
      signaturePath: o.signaturePath,
      contentKey: key,
    });
    plaintext = dec.plaintext;
    const m = dec.header.metadata;
    if (m.name !== o.expect.name || m.version !== o.expect.version || dec.headerSha256 !== o.expect.headerSha256) {
      plaintext.fill(0);
      throw failed(`the package holds ${m.name} ${m.version}, not the release ${o.expect.name} ${o.expect.version}`);
    }
  } finally {
    wipe(key.bytes);
  }
  const dir = await mkdtemp(join(o.workDir, 'handoff-'));
  try {
    const path = await writePayload(dir, plaintext);
    plaintext.fill(0);
    const argv = o.command.map((a) => a.replaceAll('{path}', path));
    return await runInstaller(argv, o.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  } finally {
    plaintext.fill(0);
    await rm(dir, { recursive: true, force: true });
  }
}
