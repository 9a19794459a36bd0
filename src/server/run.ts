/**
 * Starting a control-plane instance from a data directory: the fleet CA (created on first start),
 * the EK trust store (DIR/ek-roots), the store (SQLite in DIR, or PostgreSQL), then the HTTPS
 * server on the listen address. `close()` stops accepting, drains in-flight requests and closes
 * the database (graceful shutdown).
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import { EdgeguardError } from '../errors/index.ts';
import { FleetCa, PKI_SUBDIR } from '../pki/index.ts';
import { Store, SQLITE_FILE } from '../store/index.ts';
import { loadEkTrustStore, EK_ROOTS_SUBDIR } from '../attest/index.ts';
import { buildServer, type BuiltServer } from './app.ts';
import { watchEkRoots } from './ek-roots-watch.ts';
import { writeServerConfig } from './server-config.ts';
import { AUTO_APPROVE_FILE, ensurePrivateDir, refuseUnsafeTrustInputs, restrictToOwner } from './data-dir.ts';
import { readAutoApproveList } from './enrollment.ts';
import type { ServerPolicyOptions } from './context.ts';
import type { ServerPlugin } from './plugins.ts';
import { listenHost } from '../net/index.ts';

export interface StartServerOptions {
  dataDir: string;
  /** host:port; port 0 picks a free one. */
  listen: string;
  /** postgres:// URL; SQLite in dataDir when absent. */
  dbUrl?: string | undefined;
  caPassphrase: string;
  policy?: ServerPolicyOptions;
  hostnames?: string[];
  logger?: Logger | false;
  plugins?: ServerPlugin[];
}

export interface RunningServer extends BuiltServer {
  url: string;
  port: number;
  createdCa: boolean;
  close(): Promise<void>;
}

export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(listen);
  if (!m) throw new EdgeguardError('EG_USAGE', `--listen "${listen}" is not HOST:PORT (e.g. 127.0.0.1:8443).`);
  const port = Number(m[2]);
  if (port > 65535) throw new EdgeguardError('EG_USAGE', `port ${port} is out of range.`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

export async function startServer(opts: StartServerOptions): Promise<RunningServer> {
  const { host: listenOn, port } = parseListen(opts.listen);
  // The certificate still names localhost; the URL and the socket are 127.0.0.1 (src/net/listen-host.ts).
  const host = listenHost(listenOn);
  // Checked before anything is tightened: a directory others could write may already hold their files.
  refuseUnsafeTrustInputs(opts.dataDir);
  // A list past its cap is refused here (EG_FILE_TOO_LARGE), not found out at an enrollment.
  readAutoApproveList(opts.policy?.autoApproveFile ?? join(opts.dataDir, AUTO_APPROVE_FILE));
  ensurePrivateDir(opts.dataDir);
  ensurePrivateDir(join(opts.dataDir, EK_ROOTS_SUBDIR));
  const { ca, created } = await FleetCa.openOrCreate(opts.dataDir, opts.caPassphrase);
  ensurePrivateDir(join(opts.dataDir, PKI_SUBDIR));
  const ekTrust = loadEkTrustStore(join(opts.dataDir, EK_ROOTS_SUBDIR));
  const store = await Store.open({ dataDir: opts.dataDir, url: opts.dbUrl });
  if (opts.dbUrl === undefined) restrictToOwner(join(opts.dataDir, SQLITE_FILE));
  writeServerConfig(opts.dataDir, opts.dbUrl);
  const hostnames = opts.hostnames ?? [
    ...new Set([host === '0.0.0.0' || host === '::' ? 'localhost' : host, 'localhost', '127.0.0.1', '::1']),
  ];
  let built: BuiltServer;
  try {
    built = await buildServer({
      store,
      ca,
      ekTrust,
      policy: { autoApproveFile: join(opts.dataDir, AUTO_APPROVE_FILE), ...opts.policy },
      hostnames,
      logger: opts.logger ?? false,
      ...(opts.plugins ? { plugins: opts.plugins } : {}),
    });
  } catch (e) {
    await store.close();
    throw e;
  }
  try {
    await built.app.listen({ host, port });
  } catch (e) {
    await built.app.close();
    await store.close();
    const code = (e as NodeJS.ErrnoException).code;
    throw new EdgeguardError(
      'EG_SERVER',
      code === 'EADDRINUSE'
        ? `${opts.listen} is already in use; choose another --listen address.`
        : `could not listen on ${opts.listen} (${code ?? (e as Error).message}).`,
      { cause: e },
    );
  }
  const ekRootsWatcher = watchEkRoots(join(opts.dataDir, EK_ROOTS_SUBDIR), ekTrust, built.app.log);
  const addr = built.app.server.address();
  const boundPort = typeof addr === 'object' && addr ? addr.port : port;
  const urlHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  let closing: Promise<void> | undefined;
  return {
    ...built,
    url: `https://${urlHost}:${boundPort}`,
    port: boundPort,
    createdCa: created,
    close() {
      closing ??= (async () => {
        ekRootsWatcher.close();
        await built.app.close();
        await store.close();
      })();
      return closing;
    },
  };
}
