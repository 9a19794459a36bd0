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
import {
  controlPlanePlugins,
  loadServerConfig,
  parseListen,
  recordAdminCertificate,
  startServer,
} from '../../server/index.ts';
import { logOriginFor } from '../../audit/index.ts';
import { userInfo } from 'node:os';
import { Output, globalOptions } from '../output.ts';

function adminCommand(program: Command): Command {
  return (
    program.commands.find((c) => c.name() === 'admin') ??
    program.command('admin').description("fleet administration from the server's data directory")
  );
}

/** The listen host as it goes into a URL (IPv6 in brackets). */
function hostOfListen(listen: string): string {
  const { host } = parseListen(listen);
  return host.includes(':') ? `[${host}]` : host;
}

export function registerServerCommands(program: Command): void {
  program
    .command('server')
    .description('run the control plane: fleet CA, TPM-proven enrollment, device API over mutual TLS')
    .requiredOption('--data <dir>', 'data directory (fleet CA, SQLite database, ek-roots/, auto-approve.txt)')
    .option(
      '--listen <host:port>',
      'address to listen on (localhost: 127.0.0.1 alone, so the per-address limits see every connection)',
      '127.0.0.1:8443',
    )
    .option('--db <url>', 'PostgreSQL URL (postgres://user@host:port/db); SQLite in --data when absent')
    .option(
      '--config <file>',
      'YAML server configuration: `limits:` (connection and request limits; README, "Control plane limits")',
    )
    .option(
      '--ca-passphrase-file <file>',
      'file whose first line is the CA key passphrase (else $EDGEGUARD_CA_PASSPHRASE)',
    )
    .option(
      '--hostname <name...>',
      'names and addresses the server certificate covers (default: the listen host, localhost, 127.0.0.1, ::1)',
    )
    .option(
      '--log-origin <origin>',
      "the audit log's origin, a schema-less URL naming this fleet's log (default for a new log: HOSTNAME:PORT/audit from the first --hostname or the listen address; an existing log keeps its own)",
    )
    .option('--allow-software-devices', 'accept devices without a TPM (they stay labelled software-bound)')
    .option('--device-cert-days <n>', 'device certificate lifetime in days', '30')
    .option('--enroll-rate <n>', 'enrollment requests per minute per client address', '30')
    .option('--attest-window <seconds>', 'how long a passing attestation keeps a device trusted', '300')
    .option('--attest-webhook <url>', 'POST a JSON alert here on each failed attestation and each silent device')
    .option('--attest-revoke', 'revoke a device (all its certificates) when its attestation fails')
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
          config?: string;
          caPassphraseFile?: string;
          hostname?: string[];
          allowSoftwareDevices?: boolean;
          deviceCertDays: string;
          enrollRate: string;
          attestWindow: string;
          attestWebhook?: string;
          attestRevoke?: boolean;
          logLevel: string;
          logOrigin?: string;
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
        const windowSeconds = Number(opts.attestWindow);
        if (!Number.isInteger(windowSeconds) || windowSeconds < 10)
          throw new EdgeguardError('EG_USAGE', '--attest-window must be a whole number of seconds, at least 10.');
        const fileConfig = opts.config !== undefined ? await loadServerConfig(opts.config) : {};
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
            ...(fileConfig.limits ? { limits: fileConfig.limits } : {}),
          },
          plugins: controlPlanePlugins({
            dataDir: opts.data,
            attestation: {
              freshnessSeconds: windowSeconds,
              onFailure: { webhookUrl: opts.attestWebhook, revokeCertificate: Boolean(opts.attestRevoke) },
            },
            ...(opts.logOrigin !== undefined ? { origin: opts.logOrigin } : {}),
            defaultOrigin: logOriginFor(
              `https://${opts.hostname?.[0] ?? hostOfListen(opts.listen)}:${parseListen(opts.listen).port}`,
            ),
          }).all,
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
    .option('--db <url>', "the server's PostgreSQL URL (default: the database named in DATA/server.json)")
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
        // Recorded, because the server refuses certificates it has no record of (and so it can be revoked),
        // and logged (cert.issued) in the server's audit log.
        await recordAdminCertificate({ dataDir: opts.data, db: opts.db }, issued, userInfo().username);
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
