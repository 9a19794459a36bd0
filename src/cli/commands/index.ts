/**
 * Every command module of the CLI. Each registers its own subcommands on the program; it is
 * imported only when one of its commands runs (src/cli/main.ts), so a module's heavy libraries
 * (ONNX Runtime, sharp, fastify, kysely, ...) load for the commands that use them and for nothing
 * else. Add a module here with a stable `id`.
 */
import type { Command } from 'commander';

export interface CommandModule {
  id: string;
  load(): Promise<(program: Command) => void>;
}

export const COMMAND_MODULES: CommandModule[] = [
  { id: 'key', load: async () => (await import('./key.ts')).registerKeyCommands },
  { id: 'model', load: async () => (await import('./model.ts')).registerModelCommands },
  { id: 'run', load: async () => (await import('./run.ts')).registerRunCommand },
  { id: 'device', load: async () => (await import('./device.ts')).registerDeviceCommands },
  { id: 'audit', load: async () => (await import('./audit.ts')).registerAuditCommands },
  { id: 'server', load: async () => (await import('./server.ts')).registerServerCommands },
  { id: 'fleet', load: async () => (await import('./fleet.ts')).registerFleetCommands },
  { id: 'agent-serve', load: async () => (await import('./agent-serve.ts')).registerAgentServeCommand },
  { id: 'review', load: async () => (await import('./review.ts')).registerReviewCommands },
  { id: 'guard', load: async () => (await import('./guard.ts')).registerGuardCommands },
  { id: 'demo', load: async () => (await import('./demo.ts')).registerDemoCommand },
  { id: 'harden', load: async () => (await import('./harden.ts')).registerHardenCommands },
  { id: 'attest', load: async () => (await import('./attest.ts')).registerAttestCommands },
  { id: 'release', load: async () => (await import('./release.ts')).registerReleaseCommands },
  { id: 'checklist', load: async () => (await import('./checklist.ts')).registerChecklistCommand },
  { id: 'ui', load: async () => (await import('./ui.ts')).registerUiCommands },
  { id: 'agent-update', load: async () => (await import('./agent-update.ts')).registerAgentUpdateCommand },
];
