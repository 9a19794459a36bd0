/**
 * `edgeguard admin ui-login`: a one-time sign-in link to the control plane's dashboard (/ui).
 * With an admin certificate (the shared connection options, ../connection.ts) the server issues
 * it and binds the session to that certificate; with `--data` (on the server's machine, no
 * certificate) it is written straight into the server's store. Either way the link works once,
 * for five minutes, and its issue is in the audit log.
 */
import { userInfo } from 'node:os';
import type { Command } from 'commander';
import { EdgeguardError } from '../../errors/index.ts';
import { LoginLinkAnswer } from '../../fleet/index.ts';
import { issueUiLoginLinkOffline, UI_LINK_TTL_MS, type UiLoginLink } from '../../server/index.ts';
import { withConnection, type ConnectionOptions } from '../connection.ts';
import { Output, globalOptions } from '../output.ts';
import { adminClient, run } from './fleet.ts';

interface UiLoginOptions extends ConnectionOptions {
  data?: string;
  db?: string;
  url: string;
  name?: string;
}

function adminGroup(program: Command): Command {
  return (
    program.commands.find((c) => c.name() === 'admin') ??
    program.command('admin').description("fleet administration from the server's data directory")
  );
}

export function registerUiCommands(program: Command): void {
  withConnection(
    adminGroup(program)
      .command('ui-login')
      .description(
        `print a one-time sign-in link to the dashboard (valid ${UI_LINK_TTL_MS / 60_000} minutes, once): over the API with an admin certificate, or with --data on the server's machine`,
      ),
  )
    .option('--data <dir>', "the server's data directory: issue the link without a certificate")
    .option('--db <url>', "with --data: the server's PostgreSQL URL (default: the one DATA/server.json names)")
    .option('--url <url>', 'with --data: the URL the server is reached at', 'https://127.0.0.1:8443')
    .option('--name <name>', 'with --data: the admin the session is for (default: your user name)')
    .action(async (opts: UiLoginOptions, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      let link: UiLoginLink;
      if (opts.data !== undefined) {
        if (!/^https:\/\/[^/]+\/?$/.test(opts.url))
          throw new EdgeguardError('EG_USAGE', `--url "${opts.url}" is not https://HOST:PORT.`);
        const issuedBy = userInfo().username;
        link = await issueUiLoginLinkOffline({
          dataDir: opts.data,
          db: opts.db,
          serverUrl: opts.url,
          admin: opts.name ?? issuedBy,
          issuedBy,
        });
      } else {
        if (opts.name !== undefined)
          throw new EdgeguardError(
            'EG_USAGE',
            '--name goes with --data; over the API the link is for your certificate.',
          );
        link = await run(adminClient(opts), (c) =>
          c.callChecked(LoginLinkAnswer, 'sign-in link', 'POST', '/v1/ui/login-links'),
        );
      }
      out.result({ ok: true, url: link.url, expiresAt: link.expiresAt }, [
        link.url,
        `open it in a browser before ${link.expiresAt}; it signs in once.`,
      ]);
    });
}
