/**
 * `edgeguard agent update --config agent.yaml [--target PATH] [--json]`: one release check and
 * install now (agent.yaml `update:`; with update.director, what the control plane's director
 * assigns, reported back). Exit 0 when the release is installed (or already was, or the director
 * assigns nothing);
 * otherwise the code of why not: 3 refused (EG_RELEASE_REFUSED, details.reason names the attack),
 * reason attestation: the director refused while the device's attestation is not fresh and passing),
 * 10 verified but not installed (EG_INSTALL_FAILED: trial load, smoke test, installer command),
 * 11 another install holds the data directory's lock (EG_BUSY: nothing done; after --wait SECONDS),
 * 2 configuration. A serving agent picks up the switch by itself.
 */
import { Command } from 'commander';
import { loadAgentConfig, runAgentUpdate } from '../../agent/index.ts';
import { EdgeguardError, type ErrorCode } from '../../errors/index.ts';
import { Output, globalOptions } from '../output.ts';

function group(program: Command, name: string, description: string): Command {
  return program.commands.find((c) => c.name() === name) ?? program.command(name).description(description);
}

export function registerAgentUpdateCommand(program: Command): void {
  const agent = group(program, 'agent', 'the device agent');
  agent
    .command('update')
    .description(
      'check the release repository (or the director) and install the release now (A/B slots, smoke test, anti-rollback floor)',
    )
    .requiredOption('--config <file>', 'agent.yaml with an update: section')
    .option('--target <path>', 'the release target to install (default update.target)')
    .option('--wait <seconds>', 'wait this long while another install runs on the data directory (default 0)', '0')
    .action(async (opts: { config: string; target?: string; wait: string }, cmd: Command) => {
      const wait = Number(opts.wait);
      if (!Number.isFinite(wait) || wait < 0 || wait > 86400)
        throw new EdgeguardError('EG_USAGE', `--wait takes seconds from 0 to 86400, not "${opts.wait}".`);
      const config = await loadAgentConfig(opts.config);
      const outcome = await runAgentUpdate(config, { target: opts.target, waitMs: wait * 1000 });
      if (!outcome.ok) {
        const e = outcome.error!;
        throw new EdgeguardError(e.code as ErrorCode, e.message, {
          details: { ...(e.reason ? { reason: e.reason } : {}), outcome },
        });
      }
      const out = new Output(globalOptions(cmd));
      if (outcome.nothingAssigned) {
        out.result({ ...outcome }, ['the director assigns this device no release: nothing to do']);
        return;
      }
      const r = outcome.release!;
      out.result({ ...outcome }, [
        outcome.unchanged
          ? `${r.name} ${r.version} is already installed`
          : `installed ${r.kind} ${r.name} ${r.version}${outcome.slot ? ` in slot ${outcome.slot}` : ''}` +
            (outcome.previous ? ` (was ${outcome.previous.version})` : '') +
            `; anti-rollback floor ${outcome.floor.value} (${outcome.floor.provider})` +
            (outcome.floorPending ? `; floor raise pending: ${outcome.floorPending}` : '') +
            (typeof outcome.reported === 'string'
              ? `; the version report did not reach the control plane: ${outcome.reported}`
              : ''),
      ]);
    });
}
