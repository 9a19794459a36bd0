/** `edgeguard demo`: runs every demo step in a scratch workspace and reports each outcome. */
import { Command } from 'commander';
import { mkdtemp, rm, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { EdgeguardError } from '../../errors/index.ts';
import { DEMO_STEPS, makeContext } from '../demo/index.ts';
import { keepDashboardRunning } from '../demo/dashboard.ts';
import { Output, globalOptions } from '../output.ts';

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description(
      'run the end-to-end demo: keys, protected model, in-memory inference, tampering refused, and every later capability',
    )
    .option('--dir <dir>', 'workspace to keep the demo files in (default: a temporary directory, removed afterwards)')
    .option('--only <ids>', 'comma-separated step ids to run (with their prerequisites listed first)')
    .option(
      '--keep',
      'at the end, keep a demo control plane running and print its dashboard sign-in link (Ctrl-C ends)',
    )
    .action(async (opts: { dir?: string; only?: string; keep?: boolean }, cmd: Command) => {
      const g = globalOptions(cmd);
      const out = new Output(g);
      const only = opts.only?.split(',').map((s) => s.trim());
      const unknown = only?.filter((id) => !DEMO_STEPS.some((s) => s.id === id)) ?? [];
      if (unknown.length > 0 || only?.length === 0) {
        throw new EdgeguardError(
          'EG_USAGE',
          `no demo step is called ${unknown.map((u) => `"${u}"`).join(', ') || '""'}; the steps are ${DEMO_STEPS.map((s) => s.id).join(', ')}.`,
        );
      }
      const dir = opts.dir ? resolve(opts.dir) : await mkdtemp(join(tmpdir(), 'edgeguard-demo-'));
      if (opts.dir) await mkdir(dir, { recursive: true });
      const ctx = makeContext(dir, g.json);
      const steps = only ? DEMO_STEPS.filter((s) => only.includes(s.id)) : DEMO_STEPS;
      const report: Array<{
        id: string;
        title: string;
        ok: boolean;
        ms: number;
        result?: Record<string, unknown>;
        error?: unknown;
      }> = [];
      if (!g.json) process.stdout.write(`edgeguard demo (workspace ${dir})\n`);
      try {
        for (const [i, step] of steps.entries()) {
          if (!g.json) process.stdout.write(`\n[${i + 1}/${steps.length}] ${step.title}\n`);
          const t = performance.now();
          try {
            const result = await step.run(ctx);
            report.push({ id: step.id, title: step.title, ok: true, ms: Math.round(performance.now() - t), result });
          } catch (e) {
            report.push({
              id: step.id,
              title: step.title,
              ok: false,
              ms: Math.round(performance.now() - t),
              error: e instanceof EdgeguardError ? e.toJSON() : String(e),
            });
            throw e instanceof EdgeguardError
              ? e
              : new EdgeguardError('EG_INTERNAL', `demo step "${step.id}" failed: ${(e as Error).message}`, {
                  cause: e,
                });
          }
        }
        if (opts.keep)
          await keepDashboardRunning(ctx, (line) => (g.json ? process.stderr : process.stdout).write(line + '\n'));
      } finally {
        if (!opts.dir) await rm(dir, { recursive: true, force: true });
      }
      out.result({ ok: true, workspace: opts.dir ? dir : null, steps: report }, [
        '',
        `demo complete: ${report.length} steps passed${opts.dir ? `; files kept in ${dir}` : ''}`,
      ]);
    });
}
