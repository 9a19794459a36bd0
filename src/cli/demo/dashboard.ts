/**
 * `edgeguard demo --keep`: the demo ends with a control plane left running (a software-key device
 * enrolled with it) and prints the sign-in link of its dashboard; Ctrl-C stops it.
 */
import { createUiLoginLink } from '../../server/index.ts';
import type { DemoContext } from './context.ts';
import { startDemoFleet } from './fleet-device.ts';

export async function keepDashboardRunning(ctx: DemoContext, print: (line: string) => void): Promise<void> {
  const fleet = await startDemoFleet(ctx, 'dashboard');
  try {
    const dataDir = ctx.path('dashboard-control-plane');
    const link = await createUiLoginLink(fleet.server.ctx.store, {
      serverUrl: fleet.server.url,
      admin: 'demo-operator',
    });
    print('');
    print(`dashboard of the demo control plane (self-signed fleet CA: your browser will warn once):`);
    print(`  ${link.url}`);
    print(`  the link signs in once, until ${link.expiresAt}; another one:`);
    print(`  $ edgeguard admin ui-login --data ${dataDir} --url ${fleet.server.url}`);
    print('the control plane keeps running until Ctrl-C.');
    await new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
  } finally {
    await fleet.server.close();
  }
}
