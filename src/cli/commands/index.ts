/** Every command group of the CLI; each file registers its own subcommands. */
import type { Command } from 'commander';
import { registerKeyCommands } from './key.ts';
import { registerModelCommands } from './model.ts';
import { registerRunCommand } from './run.ts';
import { registerDemoCommand } from './demo.ts';

export const COMMAND_MODULES: Array<(program: Command) => void> = [
  registerKeyCommands,
  registerModelCommands,
  registerRunCommand,
  registerDemoCommand,
];
