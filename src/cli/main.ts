/**
 * The `edgeguard` command line: one commander program; each domain registers its commands from
 * a file under commands/, imported only when one of its commands runs (manifest.ts). Exit codes:
 * 0 success, 2 usage, 3 integrity or signature failure, 4 key failure, 5 TPM failure, 6 inference
 * or input guard, 7 network/PKI/server, 8 audit, 9 a preflight warning, 1 other.
 */
import { Command, CommanderError } from 'commander';
import { EdgeguardError } from '../errors/index.ts';
import { reportError, type GlobalOptions } from './output.ts';
import { COMMAND_MODULES, type CommandModule } from './commands/index.ts';
import { CLI_VERSION, HELP_WIDTH, answerFromManifest, readManifest, type CliManifest } from './manifest.ts';

/** The program with the commands of `modules` (default: all of them). */
export async function buildProgram(modules: CommandModule[] = COMMAND_MODULES): Promise<Command> {
  const program = new Command('edgeguard')
    .description('Protect AI models and the data they see on edge devices.')
    .version(CLI_VERSION)
    .option('--json', 'print machine-readable JSON on stdout')
    .option('--debug', 'print stack traces on failure')
    .configureOutput({ writeErr: () => undefined, getOutHelpWidth: () => HELP_WIDTH })
    .enablePositionalOptions()
    .exitOverride();
  for (const m of modules) (await m.load())(program);
  addGlobalFlags(program);
  return program;
}

/**
 * Root options are positional (so a subcommand may have its own --version), hence every leaf
 * command gets --json and --debug too: `edgeguard model verify x --json` works as expected.
 */
function addGlobalFlags(cmd: Command): void {
  for (const sub of cmd.commands) {
    sub.configureOutput({ getOutHelpWidth: () => HELP_WIDTH });
    if (sub.commands.length > 0) {
      addGlobalFlags(sub);
      continue;
    }
    const has = (flag: string) => sub.options.some((o) => o.long === flag);
    if (!has('--json')) sub.option('--json', 'print machine-readable JSON on stdout');
    if (!has('--debug')) sub.option('--debug', 'print stack traces on failure');
  }
}

/** The command modules a run of `words` needs: those of its group, or all when unsure. */
function modulesFor(words: string[], manifest: CliManifest | undefined): CommandModule[] {
  const group = words.find((w) => !w.startsWith('-'));
  const ids = group === undefined ? undefined : manifest?.groups[group];
  return ids ? COMMAND_MODULES.filter((m) => ids.includes(m.id)) : COMMAND_MODULES;
}

export async function main(argv: string[]): Promise<number> {
  const words = argv.slice(2);
  const preOpts: GlobalOptions = { json: argv.includes('--json'), debug: argv.includes('--debug') };
  const manifest = readManifest();
  const answer = manifest && answerFromManifest(manifest, words);
  if (answer) {
    if ('stdout' in answer) process.stdout.write(answer.stdout);
    else process.stderr.write(answer.stderr);
    return answer.code;
  }
  try {
    const program = await buildProgram(modulesFor(words, manifest));
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version end here too, with exit code 0.
      if (e.exitCode === 0) return 0;
      if (e.code === 'commander.help') return 2;
      return reportError(new EdgeguardError('EG_USAGE', e.message.replace(/^error: /, '') + '; see --help.'), preOpts);
    }
    return reportError(e, preOpts);
  }
}
