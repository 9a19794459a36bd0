/**
 * `edgeguard server`: the control plane. `edgeguard admin cert`: an admin client certificate
 * issued offline from the data directory (needs the CA passphrase).
 */
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { pino } from 'pino';
import { EdgeguardError, fsError } from '../../errors/index.ts';
import {
  FleetCa,
  generateP256,
  privateKeyToPkcs8Pem,
  resolveCaPassphrase,
  spkiOf,
  DEFAULT_ADMIN_DAYS,
  FLEET_CA_FILE,
} from '../../pki/index.ts';
import { Store } from '../../store/index.ts';
import { controlPlanePlugins, startServer } from '../../server/index.ts';
import { Output, globalOptions } from '../output.ts';

function adminCommand(program: Command): Command {
  return (
    program.commands.find((c) => c.name() === 'admin') ??
    program.command('admin').description("fleet administration from the server's data directory")
  );
}

export function registerServerCommands(program: Command): void {
  program
    .command('server')
    .description('run the control plane: fleet CA, TPM-proven enrollment, device API over mutual TLS')
    .requiredOption('--data <dir>', 'data directory (fleet CA, SQLite database, ek-roots/, auto-approve.txt)')
    .option('--listen <host:port>', 'address to listen on', '127.0.0.1:8443')
    .option('--db <url>', 'PostgreSQL URL (postgres://user@host:port/db); SQLite in --data when absent')
    .option(
      '--ca-passphrase-file <file>',
      'file whose first line is the CA key passphrase (else $EDGEGUARD_CA_PASSPHRASE)',
    )
    .option(
      '--hostname <name...>',
      'names and addresses the server certificate covers (default: the listen host, localhost, 127.0.0.1, ::1)',
    )
    .option('--allow-software-devices', 'accept devices without a TPM (they stay labelled software-bound)')
    .option('--device-cert-days <n>', 'device certificate lifetime in days', '30')
    .option('--enroll-rate <n>', 'enrollment requests per minute per client address', '30')
    .addOption(
      new Option('--log-level <level>', 'pino log level')
        .choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
        .default('info'),
    )
    .action(
      async (
        opts: {
          data: string;
          listen: string;
          db?: string;
          caPassphraseFile?: string;
          hostname?: string[];
          allowSoftwareDevices?: boolean;
          deviceCertDays: string;
          enrollRate: string;
          logLevel: string;
        },
        cmd: Command,
      ) => {
        const out = new Output(globalOptions(cmd));
        const days = Number(opts.deviceCertDays);
        const rate = Number(opts.enrollRate);
        if (!Number.isInteger(days) || days < 1 || days > 397)
          throw new EdgeguardError('EG_USAGE', '--device-cert-days must be a whole number from 1 to 397.');
        if (!Number.isInteger(rate) || rate < 1)
          throw new EdgeguardError('EG_USAGE', '--enroll-rate must be a positive whole number.');
        const passphrase = resolveCaPassphrase({ file: opts.caPassphraseFile });
        const logger = pino({ level: opts.logLevel, base: { service: 'edgeguard-server' } }, process.stderr);
        // The first start makes the fleet CA, its encrypted key and the log key (seconds on a small machine).
        if (!existsSync(join(opts.data, FLEET_CA_FILE)))
          out.info(
            `first start in ${opts.data}: creating the fleet CA (key encrypted with the passphrase), the audit log key and the database...`,
          );
        out.info(
          `opening ${opts.db ? 'the PostgreSQL database' : 'the SQLite database'} and starting the control plane...`,
        );
        const server = await startServer({
          dataDir: opts.data,
          listen: opts.listen,
          dbUrl: opts.db,
          caPassphrase: passphrase,
          ...(opts.hostname ? { hostnames: opts.hostname } : {}),
          logger,
          policy: {
            allowSoftwareDevices: Boolean(opts.allowSoftwareDevices),
            deviceCertDays: days,
            enrollRateLimit: { max: rate, timeWindowMs: 60_000 },
          },
          plugins: controlPlanePlugins({ dataDir: opts.data }).all,
        });
        const ekRoots = server.ctx.ekTrust.anchors.length;
        if (ekRoots === 0)
          out.warn(
            `no TPM manufacturer CA in ${opts.data}/ek-roots: TPM devices can enroll only if their EK hash is in ${opts.data}/auto-approve.txt. Copy your TPM vendors' CA certificates there and restart.`,
          );
        out.result(
          {
            ok: true,
            url: server.url,
            fleetCa: `${opts.data}/${FLEET_CA_FILE}`,
            database: server.ctx.store.where,
            createdCa: server.createdCa,
            ekRoots,
          },
          [
            `edgeguard control plane on ${server.url} (${server.ctx.store.where})`,
            `fleet CA: ${opts.data}/${FLEET_CA_FILE}${server.createdCa ? ' (created)' : ''}`,
            'API docs: ' + server.url + '/docs',
          ],
        );
        // Graceful shutdown: stop accepting, finish in-flight requests, close the database.
        await new Promise<void>((resolve) => {
          const stop = (signal: string) => {
            logger.info({ signal }, 'shutting down');
            server.close().then(resolve, (e) => {
              logger.error({ err: e }, 'shutdown failed');
              resolve();
            });
          };
          process.once('SIGINT', () => stop('SIGINT'));
          process.once('SIGTERM', () => stop('SIGTERM'));
        });
      },
    );

  adminCommand(program)
    .command('cert')
    .description('issue an admin client certificate (PREFIX.crt, PREFIX.key) from the fleet CA in --data')
    .requiredOption('--data <dir>', "the server's data directory")
    .requiredOption(
      '-o, --out <prefix>',
      'output prefix: writes PREFIX.crt (with the issuing CA) and PREFIX.key (mode 0600)',
    )
    .option('--name <name>', "the admin's name (certificate CN)", 'admin')
    .option('--days <n>', 'lifetime in days', String(DEFAULT_ADMIN_DAYS))
    .option('--db <url>', 'PostgreSQL URL, when the server uses one')
    .option(
      '--ca-passphrase-file <file>',
      'file whose first line is the CA key passphrase (else $EDGEGUARD_CA_PASSPHRASE)',
    )
    .option('--force', 'overwrite existing files')
    .action(
      async (
        opts: {
          data: string;
          out: string;
          name: string;
          days: string;
          db?: string;
          caPassphraseFile?: string;
          force?: boolean;
        },
        cmd: Command,
      ) => {
        const out = new Output(globalOptions(cmd));
        const days = Number(opts.days);
        if (!Number.isInteger(days) || days < 1 || days > 825)
          throw new EdgeguardError('EG_USAGE', '--days must be a whole number from 1 to 825.');
        const ca = await FleetCa.load(opts.data, resolveCaPassphrase({ file: opts.caPassphraseFile }));
        const keys = await generateP256();
        const issued = await ca.issueAdminCertificate({
          name: opts.name,
          publicKey: await spkiOf(keys.publicKey),
          days,
        });
        // Recorded, because the server refuses certificates it has no record of (and so it can be revoked).
        const store = await Store.open({ dataDir: opts.data, url: opts.db });
        try {
          await store.recordCertificate({
            serial: issued.serial,
            device_id: null,
            role: 'admin',
            subject: issued.subject,
            not_before: issued.notBefore.toISOString(),
            not_after: issued.notAfter.toISOString(),
            pem: issued.chainPem,
          });
        } finally {
          await store.close();
        }
        const crt = `${opts.out}.crt`;
        const key = `${opts.out}.key`;
        const flag = opts.force ? 'w' : 'wx';
        await writeFile(key, await privateKeyToPkcs8Pem(keys.privateKey), { mode: 0o600, flag }).catch((e) => {
          throw fsError(e, key, 'write');
        });
        await writeFile(crt, issued.chainPem, { mode: 0o644, flag }).catch((e) => {
          throw fsError(e, crt, 'write');
        });
        out.result(
          {
            ok: true,
            certificate: crt,
            key,
            serial: issued.serial,
            name: opts.name,
            notAfter: issued.notAfter.toISOString(),
            fleetCa: `${opts.data}/${FLEET_CA_FILE}`,
          },
          [
            `admin certificate for "${opts.name}" (serial ${issued.serial}), valid until ${issued.notAfter.toISOString()}`,
            `certificate: ${crt}`,
            `key:         ${key} (mode 0600)`,
            `use with: edgeguard device list --server https://HOST:PORT --cert ${crt} --key ${key} --ca ${opts.data}/${FLEET_CA_FILE}`,
          ],
        );
      },
    );
}
