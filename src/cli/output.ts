/**
 * How every command talks to the person (or pipeline) that ran it: human text on stdout, or one
 * JSON document with --json; warnings and progress on stderr so that stdout stays parseable.
 */
import { Command } from 'commander';
import cliProgress from 'cli-progress';
import { EdgeguardError, ERROR_EXIT_CODES } from '../errors/index.ts';

export interface GlobalOptions {
  json: boolean;
  debug: boolean;
}

export function globalOptions(cmd: Command): GlobalOptions {
  const o = cmd.optsWithGlobals() as { json?: boolean; debug?: boolean };
  return { json: Boolean(o.json), debug: Boolean(o.debug) };
}

export class Output {
  constructor(readonly opts: GlobalOptions) {}

  /** Print the command's result: `data` as JSON with --json, otherwise the human lines. */
  result(data: unknown, human: string | string[]): void {
    if (this.opts.json) {
      process.stdout.write(JSON.stringify(data, jsonReplacer, 2) + '\n');
    } else {
      const lines = Array.isArray(human) ? human : [human];
      process.stdout.write(lines.join('\n') + '\n');
    }
  }

  warn(message: string): void {
    process.stderr.write(`warning: ${message}\n`);
  }

  info(message: string): void {
    if (!this.opts.json) process.stderr.write(`${message}\n`);
  }

  /**
   * A byte-count progress bar on stderr, shown only on a TTY and only for work large enough to
   * notice; otherwise a no-op.
   */
  progress(label: string, totalBytes: number): Progress {
    if (this.opts.json || !process.stderr.isTTY || totalBytes < 32 * 1024 * 1024) return NO_PROGRESS;
    const bar = new cliProgress.SingleBar(
      {
        format: `${label} [{bar}] {percentage}% | {value}/{total} MiB | {eta_formatted}`,
        stream: process.stderr,
        hideCursor: true,
      },
      cliProgress.Presets.shades_classic,
    );
    const mib = (n: number) => Math.floor(n / (1024 * 1024));
    bar.start(mib(totalBytes), 0);
    return {
      update: (done) => bar.update(mib(done)),
      stop: () => bar.stop(),
    };
  }
}

export interface Progress {
  update(doneBytes: number): void;
  stop(): void;
}

const NO_PROGRESS: Progress = { update: () => undefined, stop: () => undefined };

function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  return value;
}

/** Print a failure as one line (`CODE: sentence`) and return the exit status for it. */
export function reportError(e: unknown, opts: GlobalOptions): number {
  const err =
    e instanceof EdgeguardError
      ? e
      : new EdgeguardError(
          'EG_INTERNAL',
          `unexpected internal error (${(e as Error)?.message ?? String(e)}); rerun with --debug and report it.`,
          { cause: e },
        );
  if (opts.json) {
    process.stdout.write(JSON.stringify({ ok: false, error: err.toJSON() }, jsonReplacer, 2) + '\n');
  } else {
    process.stderr.write(`${err.code}: ${err.message}\n`);
  }
  if (opts.debug) {
    process.stderr.write(`${err.stack ?? ''}\n`);
    if (err.cause) process.stderr.write(`caused by: ${(err.cause as Error)?.stack ?? String(err.cause)}\n`);
  }
  return ERROR_EXIT_CODES[err.code];
}
