/**
 * A software TPM (swtpm) for tests, benchmarks and the demo: manufactured by `swtpm_setup` with an
 * EK certificate signed by a local CA in a directory we choose (not the system-wide
 * /var/lib/swtpm-localca), then run as a child process on free localhost ports. Paths are
 * absolute because swtpm changes directory. Real devices use their hardware TPM instead.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { EdgeguardError } from '../errors/index.ts';

export const SWTPM_BINARIES = ['swtpm', 'swtpm_setup', 'swtpm_localca', 'tpm2_createprimary'] as const;

export function findBinary(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

/** The binaries that are missing for a software TPM (empty when swtpm and tpm2-tools are installed). */
export function missingSwtpmBinaries(): string[] {
  return SWTPM_BINARIES.filter((b) => !findBinary(b));
}

export interface LocalCa {
  dir: string;
  /** The CA that signs EK certificates (swtpm_localca's "issuer"). */
  issuerCertPath: string;
  /** The self-signed root above it. */
  rootCertPath: string;
  /** swtpm_setup configuration that points at this CA. */
  setupConfigPath: string;
}

export async function createLocalCa(dir?: string): Promise<LocalCa> {
  const caDir = resolve(dir ?? (await mkdtemp(join(tmpdir(), 'edgeguard-swtpm-ca-'))));
  await mkdir(caDir, { recursive: true });
  const localcaConf = join(caDir, 'swtpm-localca.conf');
  await writeFile(
    localcaConf,
    [
      `statedir = ${caDir}`,
      `signingkey = ${join(caDir, 'signkey.pem')}`,
      `issuercert = ${join(caDir, 'issuercert.pem')}`,
      `certserial = ${join(caDir, 'certserial')}`,
      '',
    ].join('\n'),
  );
  const optionsFile = join(caDir, 'swtpm-localca.options');
  await writeFile(
    optionsFile,
    ['--platform-manufacturer edgeguard', '--platform-version 2.1', '--platform-model swtpm', ''].join('\n'),
  );
  const setupConf = join(caDir, 'swtpm_setup.conf');
  await writeFile(
    setupConf,
    [
      `create_certs_tool = ${findBinary('swtpm_localca') ?? '/usr/bin/swtpm_localca'}`,
      `create_certs_tool_config = ${localcaConf}`,
      `create_certs_tool_options = ${optionsFile}`,
      'active_pcr_banks = sha256',
      '',
    ].join('\n'),
  );
  return {
    dir: caDir,
    issuerCertPath: join(caDir, 'issuercert.pem'),
    rootCertPath: join(caDir, 'swtpm-localca-rootca-cert.pem'),
    setupConfigPath: setupConf,
  };
}

export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => res(port));
    });
  });
}

async function portIsFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', () => res(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => res(true)));
  });
}

/** A free port P with P + 1 also free. */
export async function freePortPair(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const p = await freePort();
    if (p < 65535 && (await portIsFree(p + 1))) return p;
  }
  throw new EdgeguardError('EG_TPM_UNAVAILABLE', 'found no two adjacent free TCP ports for swtpm.');
}

export interface SwtpmOptions {
  /** Share one CA between several TPMs (a verifier trusts it once). Default: a new CA. */
  ca?: LocalCa;
  /** Reuse an existing manufactured state directory (restart after stop()). */
  stateDir?: string;
  /**
   * Write swtpm's log here at level 20, which hex-dumps every command and response
   * (`SWTPM_IO_Read` / `SWTPM_IO_Write`): what a bus sniffer would see. Tests only.
   */
  ioLogPath?: string;
}

export interface Swtpm {
  tcti: string;
  port: number;
  ctrlPort: number;
  stateDir: string;
  ca: LocalCa;
  pid: number;
  /** Stop swtpm (state kept in stateDir until remove()). */
  stop(): Promise<void>;
  /** Stop and delete the state directory (and the CA if this instance created it). */
  remove(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of running) c.kill('SIGKILL');
});

async function waitForPort(port: number, child: ChildProcess, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) return false;
    const ok = await new Promise<boolean>((res) => {
      const s = connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        res(true);
      });
      s.on('error', () => res(false));
    });
    if (ok) return true;
    await sleep(25);
  }
  return false;
}

/** Manufacture (unless stateDir is given) and start a swtpm; resolves once it accepts connections. */
export async function startSwtpm(opts: SwtpmOptions = {}): Promise<Swtpm> {
  const missing = missingSwtpmBinaries();
  if (missing.length) {
    throw new EdgeguardError(
      'EG_TPM_UNAVAILABLE',
      `swtpm is not installed (missing ${missing.join(', ')}); apt-get install swtpm swtpm-tools tpm2-tools libtss2-tcti-swtpm0.`,
    );
  }
  const ownCa = !opts.ca;
  const ca = opts.ca ?? (await createLocalCa());
  let stateDir: string;
  if (opts.stateDir) {
    stateDir = resolve(opts.stateDir);
  } else {
    stateDir = await mkdtemp(join(tmpdir(), 'edgeguard-swtpm-'));
    const setup = spawnSync(
      'swtpm_setup',
      [
        '--tpm2',
        '--tpmstate',
        stateDir,
        '--create-ek-cert',
        '--create-platform-cert',
        '--overwrite',
        '--config',
        ca.setupConfigPath,
      ],
      { encoding: 'utf8', timeout: 60_000 },
    );
    if (setup.status !== 0) {
      throw new EdgeguardError(
        'EG_TPM_UNAVAILABLE',
        `swtpm_setup failed to manufacture a TPM in ${stateDir}: ${(setup.stderr || setup.stdout || '').trim().split('\n').pop()}`,
      );
    }
  }
  let lastErr = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    // The swtpm TCTI always talks to the control channel on port + 1.
    const port = await freePortPair();
    const ctrlPort = port + 1;
    const child = spawn(
      'swtpm',
      [
        'socket',
        '--tpm2',
        '--tpmstate',
        `dir=${stateDir}`,
        '--server',
        `type=tcp,port=${port},bindaddr=127.0.0.1`,
        '--ctrl',
        `type=tcp,port=${ctrlPort},bindaddr=127.0.0.1`,
        '--flags',
        'not-need-init,startup-clear',
        ...(opts.ioLogPath ? ['--log', `file=${resolve(opts.ioLogPath)},level=20`] : []),
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    child.stderr?.on('data', (d: Buffer) => (lastErr = d.toString()));
    child.unref();
    (child.stderr as unknown as { unref?: () => void })?.unref?.();
    running.add(child);
    if (await waitForPort(port, child, 5000)) {
      const stop = async () => {
        if (child.exitCode === null && child.signalCode === null) {
          const exited = new Promise((r) => child.once('exit', r));
          child.kill('SIGTERM');
          await Promise.race([exited, sleep(3000)]);
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        }
        running.delete(child);
      };
      return {
        tcti: `swtpm:host=127.0.0.1,port=${port}`,
        port,
        ctrlPort,
        stateDir,
        ca,
        pid: child.pid ?? -1,
        stop,
        remove: async () => {
          await stop();
          await rm(stateDir, { recursive: true, force: true });
          if (ownCa) await rm(ca.dir, { recursive: true, force: true });
        },
      };
    }
    child.kill('SIGKILL');
    running.delete(child);
  }
  throw new EdgeguardError('EG_TPM_UNAVAILABLE', `swtpm did not start (${lastErr.trim() || 'no free port'}).`);
}
