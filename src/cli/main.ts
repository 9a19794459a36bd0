/**
 * The `edgeguard` command line: one commander program; each domain registers its commands from
 * a file under commands/. Exit codes: 0 success, 2 usage, 3 integrity or signature failure,
 * 4 key failure, 5 TPM failure, 6 inference or input guard, 7 network/PKI/server, 8 audit, 1 other.
 */
import { Command, CommanderError } from 'commander';
import { EdgeguardError } from '../errors/index.ts';
import { reportError, type GlobalOptions } from './output.ts';
import { COMMAND_MODULES } from './commands/index.ts';

export function buildProgram(): Command {
  const program = new Command('edgeguard')
    .description('Protect AI models and the data they see on edge devices.')
    .version('0.1.0')
    .option('--json', 'print machine-readable JSON on stdout')
    .option('--debug', 'print stack traces on failure')
    .configureOutput({ writeErr: () => undefined })
    .enablePositionalOptions()
    .exitOverride();
  for (const register of COMMAND_MODULES) register(program);
  addGlobalFlags(program);
  return program;
}

/**
 * Root options are positional (so a subcommand may have its own --version), hence every leaf
 * command gets --json and --debug too: `edgeguard model verify x --json` works as expected.
 */
function addGlobalFlags(cmd: Command): void {
  for (const sub of cmd.commands) {
    if (sub.commands.length > 0) {
      addGlobalFlags(sub);
      continue;
    }
    const has = (flag: string) => sub.options.some((o) => o.long === flag);
    if (!has('--json')) sub.option('--json', 'print machine-readable JSON on stdout');
    if (!has('--debug')) sub.option('--debug', 'print stack traces on failure');
  }
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  const preOpts: GlobalOptions = { json: argv.includes('--json'), debug: argv.includes('--debug') };
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version end here too, with exit code 0.
      if (e.exitCode === 0) return 0;
      return reportError(new EdgeguardError('EG_USAGE', e.message.replace(/^error: /, '') + '; see --help.'), preOpts);
    }
    return reportError(e, preOpts);
  }
}
