/**
 * The CLI's light table: every command's path, help text and the command modules that register
 * it, generated from the commands themselves at build time (`npm run build` writes
 * dist/cli/commands.json; scripts/build-cli-manifest.mjs). With it, `--help` of any command,
 * `--version` and a bare group are answered without importing a single command module, and a
 * command that runs imports only the modules of its group (src/cli/main.ts). Without it (running
 * the TypeScript sources), every module is loaded, as before.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { CommandModule } from './commands/index.ts';

export const CLI_VERSION = '0.1.0';
const MANIFEST_URL = new URL('./commands.json', import.meta.url);
/** Help is laid out for this width, whatever the terminal that builds it. */
export const HELP_WIDTH = 80;

export interface CliManifest {
  version: string;
  /** Top-level command name -> ids of the command modules that register commands under it. */
  groups: Record<string, string[]>;
  /** "model verify" -> its help text and subcommand names ("" is the program itself). */
  commands: Record<string, { help: string; subcommands: string[] }>;
}

/** Build the manifest from the live program: `create` makes an empty program, as main does. */
export async function buildManifest(
  modules: CommandModule[],
  create: (modules: CommandModule[]) => Promise<Command>,
): Promise<CliManifest> {
  const groups: Record<string, string[]> = {};
  for (const m of modules) {
    const alone = await create([m]);
    for (const c of alone.commands) (groups[c.name()] ??= []).push(m.id);
  }
  const commands: CliManifest['commands'] = {};
  const walk = (cmd: Command, path: string[]) => {
    const subs = cmd.commands.filter((c) => c.name() !== 'help');
    commands[path.join(' ')] = { help: cmd.helpInformation(), subcommands: subs.map((c) => c.name()) };
    for (const c of subs) walk(c, [...path, c.name()]);
  };
  walk(await create(modules), []);
  return { version: CLI_VERSION, groups, commands };
}

/** The manifest beside the compiled CLI, or undefined (sources, or a manifest of another version). */
export function readManifest(): CliManifest | undefined {
  let text: string;
  try {
    text = readFileSync(MANIFEST_URL, 'utf8');
  } catch {
    return undefined;
  }
  const m = JSON.parse(text) as Partial<CliManifest>;
  if (m.version !== CLI_VERSION || typeof m.groups !== 'object' || typeof m.commands !== 'object') return undefined;
  return m as CliManifest;
}

export type ManifestAnswer = { stdout: string; code: 0 } | { stderr: string; code: 2 };

/**
 * What the manifest alone answers: help (`-h`, `--help`, `help CMD...`), the version, and a
 * group named without a subcommand (its help on stderr, a usage error). Undefined: a command runs.
 */
export function answerFromManifest(m: CliManifest, words: string[]): ManifestAnswer | undefined {
  const end = words.indexOf('--');
  const own = end < 0 ? words : words.slice(0, end);
  const path: string[] = [];
  let helpWord = false;
  let first = true;
  let unknown = false;
  for (const w of own) {
    if (w.startsWith('-')) {
      // Root options come before the command (positional options): only there is -V the version.
      if (first && (w === '-V' || w === '--version')) return { stdout: `${m.version}\n`, code: 0 };
      continue;
    }
    if (first && w === 'help') {
      helpWord = true;
      first = false;
      continue;
    }
    first = false;
    if (!m.commands[[...path, w].join(' ')]) {
      unknown = true;
      break;
    }
    path.push(w);
  }
  const node = m.commands[path.join(' ')]!;
  if (helpWord || own.includes('-h') || own.includes('--help')) return { stdout: node.help, code: 0 };
  // An unknown subcommand is commander's to report (with its suggestion), by a full run.
  if (node.subcommands.length > 0 && !unknown) return { stderr: node.help, code: 2 };
  return undefined;
}
