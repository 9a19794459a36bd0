/** Every command group of the CLI; each file registers its own subcommands. */
import type { Command } from 'commander';
import { registerKeyCommands } from './key.ts';
import { registerModelCommands } from './model.ts';
import { registerRunCommand } from './run.ts';
import { registerDemoCommand } from './demo.ts';
import { registerGuardCommands } from './guard.ts';
import { registerDeviceCommands } from './device.ts';
import { registerAuditCommands } from './audit.ts';
import { registerServerCommands } from './server.ts';
import { registerFleetCommands } from './fleet.ts';
import { registerAgentServeCommand } from './agent-serve.ts';
import { registerReviewCommands } from './review.ts';
import { registerAttestCommands } from './attest.ts';

export const COMMAND_MODULES: Array<(program: Command) => void> = [
  registerKeyCommands,
  registerModelCommands,
  registerRunCommand,
  registerDeviceCommands,
  registerAuditCommands,
  registerServerCommands,
  registerFleetCommands,
  registerAgentServeCommand,
  registerReviewCommands,
  registerGuardCommands,
  registerAttestCommands,
  registerDemoCommand,
];
