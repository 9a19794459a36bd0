/**
 * A pair of network namespaces joined by a veth pair, for tests that need a real network: a
 * "device" side and a "server" side, with addresses the test chooses. Needs root, ip(8) and nft(8);
 * off CI, tests skip with the reason (pass `{ skip: NETNS_SKIP }`); with CI=true nothing skips.
 *
 *   const net = await createNetnsPair({ device: '10.77.0.1', server: ['10.77.0.2'], prefix: 24 });
 *   await net.exec('device', ['nft', '-f', file]);
 *   await net.remove();   // in after(): also when setup failed half way
 */
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

function missingTools(): string[] {
  return ['ip', 'nft'].filter((tool) => spawnSync(tool, ['-V'], { stdio: 'ignore' }).error !== undefined);
}

function skipReason(): string | false {
  if (process.env.CI === 'true') return false;
  if (process.getuid?.() !== 0) return 'not root: network namespace tests need root (ip netns, nft)';
  const missing = missingTools();
  return missing.length ? `${missing.join(', ')} not installed: apt-get install iproute2 nftables` : false;
}

/** false when the tests must run; otherwise why they are skipped. */
export const NETNS_SKIP: string | false = skipReason();

export type NetnsSide = 'device' | 'server';

export interface NetnsPair {
  names: Record<NetnsSide, string>;
  /** Run a command inside one namespace; rejects when it exits non-zero. */
  exec(side: NetnsSide, argv: string[]): Promise<{ stdout: string; stderr: string }>;
  remove(): Promise<void>;
}

export interface NetnsPairOptions {
  device: string;
  server: string[];
  prefix: number;
}

export async function createNetnsPair(opts: NetnsPairOptions): Promise<NetnsPair> {
  // Names unique to this process, so parallel test runs on one machine never meet.
  const names = { device: `eg-dev-${process.pid}`, server: `eg-srv-${process.pid}` };
  const created: string[] = [];
  const pair: NetnsPair = {
    names,
    exec: (side, argv) => run('ip', ['netns', 'exec', names[side], ...argv]),
    remove: async () => {
      for (const ns of created.splice(0)) await run('ip', ['netns', 'del', ns]).catch(() => undefined);
    },
  };
  try {
    for (const ns of [names.device, names.server]) {
      await run('ip', ['netns', 'add', ns]);
      created.push(ns);
    }
    // The device side speaks IPv4 only: IPv6 would send its own packets (router and multicast
    // listener messages) through the rule set under test and blur its counters.
    // (sh rather than sysctl, which minimal images lack; /proc/sys/net belongs to the writer's namespace)
    for (const scope of ['all', 'default'])
      await pair.exec('device', ['sh', '-c', `echo 1 > /proc/sys/net/ipv6/conf/${scope}/disable_ipv6`]);
    await run('ip', [
      'link',
      'add',
      'egdev',
      'netns',
      names.device,
      'type',
      'veth',
      'peer',
      'name',
      'egsrv',
      'netns',
      names.server,
    ]);
    await run('ip', ['-n', names.device, 'addr', 'add', `${opts.device}/${opts.prefix}`, 'dev', 'egdev']);
    for (const address of opts.server)
      await run('ip', ['-n', names.server, 'addr', 'add', `${address}/${opts.prefix}`, 'dev', 'egsrv']);
    for (const [ns, dev] of [
      [names.device, 'egdev'],
      [names.server, 'egsrv'],
    ] as const) {
      await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      await run('ip', ['-n', ns, 'link', 'set', dev, 'up']);
    }
    return pair;
  } catch (e) {
    await pair.remove();
    throw e;
  }
}
