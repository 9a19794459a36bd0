/**
 * Running tpm2-tools: one child process per TPM command, the TCTI passed in TPM2TOOLS_TCTI, stdout
 * collected in memory (secrets such as an unwrapped key come back this way and never touch a file),
 * stderr scanned for the TPM response code. A missing binary or an unreachable TPM becomes
 * EG_TPM_UNAVAILABLE.
 */
import { spawn } from 'node:child_process';
import { EdgeguardError } from '../errors/index.ts';
import { decodeResponseCode, responseCodeFromStderr, tpmErrorFor, type DecodedRc } from './response-code.ts';

export interface ToolRun {
  tcti: string;
  cwd: string;
  /** Bytes for the tool's stdin (tpm2_rsadecrypt and tpm2_create -i - read from it). */
  stdin?: Uint8Array;
  /** What the step does, in words, for error sentences. */
  action: string;
  timeoutMs?: number;
}

export class TpmToolError extends Error {
  constructor(
    readonly tool: string,
    readonly decoded: DecodedRc | undefined,
    readonly stderr: string,
    readonly error: EdgeguardError,
  ) {
    super(error.message);
  }
}

const TCTI_FAILURE =
  /Could not load tcti|Failed to instantiate TCTI|Cannot connect to swtpm|Failed to open specified TCTI device/;

export function runTool(tool: string, args: string[], run: ToolRun): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(tool, args, {
      cwd: run.cwd,
      env: { ...process.env, TPM2TOOLS_TCTI: run.tcti },
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: run.timeoutMs ?? 60_000,
    });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => {
      if (err.length < 16_384) err += d.toString('utf8');
    });
    child.on('error', (e: NodeJS.ErrnoException) => {
      const ee =
        e.code === 'ENOENT'
          ? new EdgeguardError(
              'EG_TPM_UNAVAILABLE',
              `${tool} is not installed; install the tpm2-tools package (apt-get install tpm2-tools) to use a TPM.`,
              { cause: e },
            )
          : new EdgeguardError(
              'EG_TPM_UNAVAILABLE',
              `could not run ${tool} to ${run.action} (${e.code ?? e.message}).`,
              { cause: e },
            );
      reject(new TpmToolError(tool, undefined, err, ee));
    });
    child.stdin.on('error', () => undefined);
    child.on('close', (code, signal) => {
      const stdout = Buffer.concat(out);
      if (code === 0) {
        resolve(stdout);
        return;
      }
      stdout.fill(0);
      const rc = responseCodeFromStderr(err);
      let error: EdgeguardError;
      let decoded: DecodedRc | undefined;
      if (rc !== undefined) {
        decoded = decodeResponseCode(rc);
        error = tpmErrorFor(decoded, run.action, tool);
      } else if (TCTI_FAILURE.test(err)) {
        error = new EdgeguardError(
          'EG_TPM_UNAVAILABLE',
          `could not reach the TPM at "${run.tcti}" to ${run.action}; check that the TPM (or swtpm) is running and the TCTI is right.`,
          { details: { tool, tcti: run.tcti } },
        );
      } else {
        const last =
          err
            .trim()
            .split('\n')
            .filter((l) => l.startsWith('ERROR'))
            .pop() ??
          err.trim().split('\n').pop() ??
          '';
        error = new EdgeguardError(
          'EG_TPM',
          `${tool} failed to ${run.action} (${signal ? `killed by ${signal}` : `exit ${code}`}: ${last.slice(0, 200)}).`,
          {
            details: { tool },
          },
        );
      }
      if (process.env.EDGEGUARD_TPM_DEBUG) process.stderr.write(`[${tool} ${args.join(' ')}]\n${err}\n`);
      reject(new TpmToolError(tool, decoded, err, error));
    });
    if (run.stdin) child.stdin.end(Buffer.from(run.stdin));
    else child.stdin.end();
  });
}
