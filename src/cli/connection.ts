/**
 * How every operator command finds the control plane and its credentials: one vocabulary, one
 * precedence, documented once (README, "Command-line conventions").
 *
 *   --server URL          the control plane, https://HOST:PORT          $EDGEGUARD_SERVER
 *   --ca FILE             the fleet CA to pin                            $EDGEGUARD_CA
 *   --client-cert FILE    the client certificate (admin or device)      $EDGEGUARD_CLIENT_CERT
 *   --client-key FILE     its private key                                $EDGEGUARD_CLIENT_KEY
 *   --config FILE         admin.yaml with server, ca, cert, key          $EDGEGUARD_CONFIG
 *
 * A flag wins over the environment, the environment over the file. Paths in the file are
 * resolved against the file's own directory, as agent.yaml's are. `--cert`/`--key` and
 * EDGEGUARD_CERT/EDGEGUARD_KEY, the names of earlier versions, are still read (hidden): `--key`
 * otherwise always means a model content key.
 */
import { dirname, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { EdgeguardError, FILE_CAPS, readBoundedTextSync } from '../errors/index.ts';

const ConfigFile = z.strictObject({
  server: z.string().optional(),
  ca: z.string().optional(),
  cert: z.string().optional(),
  key: z.string().optional(),
});

export interface ConnectionOptions {
  server?: string;
  ca?: string;
  clientCert?: string;
  clientKey?: string;
  /** Hidden aliases of clientCert and clientKey. */
  cert?: string;
  key?: string;
  config?: string;
}

/** Where to connect and with what (paths, or PEM text once read); the client pair only when given or required. */
export interface Connection {
  server: string;
  ca: string;
  cert?: string;
  key?: string;
}

/** Add the connection options to `cmd` (all optional on the command line: env and file count). */
export function withConnection(cmd: Command, what = 'admin'): Command {
  return cmd
    .option('--server <url>', 'control plane URL, https://HOST:PORT (or $EDGEGUARD_SERVER)')
    .option('--ca <file>', 'fleet CA to pin, DATA/fleet-ca.pem (or $EDGEGUARD_CA)')
    .option('--client-cert <file>', `${what} client certificate (or $EDGEGUARD_CLIENT_CERT)`)
    .option('--client-key <file>', `its private key (or $EDGEGUARD_CLIENT_KEY)`)
    .option('--config <file>', 'admin.yaml with server, ca, cert, key (or $EDGEGUARD_CONFIG)')
    .addOption(new Option('--cert <file>').hideHelp())
    .addOption(new Option('--key <file>').hideHelp());
}

/** A PEM file (a certificate, a key, a CA), read whole under a size cap. */
export function readPemFile(path: string, what: string, maxBytes: number = FILE_CAPS.certificate): string {
  return readBoundedTextSync(path, maxBytes, `read ${what}`);
}

/** The --config file's settings, with its relative paths resolved against its directory. */
function readConfigFile(path: string): z.infer<typeof ConfigFile> {
  let value: unknown;
  try {
    value = parseYaml(readPemFile(path, 'the connection config file', 64 * 1024), { maxAliasCount: 16 });
  } catch (e) {
    if (e instanceof EdgeguardError) throw e;
    throw new EdgeguardError('EG_CONFIG', `${path} is not valid YAML (${(e as Error).message.split('\n')[0]}).`, {
      cause: e,
    });
  }
  const r = ConfigFile.safeParse(value ?? {});
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new EdgeguardError(
      'EG_CONFIG',
      `${path} is not a valid edgeguard connection file (${issue?.path.join('.') || 'root'}: ${issue?.message}); it takes server, ca, cert and key.`,
    );
  }
  const base = dirname(resolve(path));
  const rel = (p: string | undefined) => (p === undefined ? undefined : resolve(base, p));
  return { server: r.data.server, ca: rel(r.data.ca), cert: rel(r.data.cert), key: rel(r.data.key) };
}

/**
 * Where the options point: the server URL and the files of the CA and client pair. `client:
 * 'required'` refuses to go on without a client certificate and key; `'optional'` takes them when
 * given (a log reader may go anonymous).
 */
export function connectionPaths(o: ConnectionOptions, client: 'required' | 'optional' = 'required'): Connection {
  const env = process.env;
  const configPath = o.config ?? env.EDGEGUARD_CONFIG;
  const file = configPath ? readConfigFile(configPath) : {};
  const hint = (flag: string, envName: string, key: string) =>
    `pass --${flag}, set ${envName}, or put "${key}:" in a --config file`;
  const server = o.server ?? env.EDGEGUARD_SERVER ?? file.server;
  const ca = o.ca ?? env.EDGEGUARD_CA ?? file.ca;
  const cert = o.clientCert ?? o.cert ?? env.EDGEGUARD_CLIENT_CERT ?? env.EDGEGUARD_CERT ?? file.cert;
  const key = o.clientKey ?? o.key ?? env.EDGEGUARD_CLIENT_KEY ?? env.EDGEGUARD_KEY ?? file.key;
  if (!server)
    throw new EdgeguardError('EG_USAGE', `missing the control plane: ${hint('server', 'EDGEGUARD_SERVER', 'server')}.`);
  if (!ca) throw new EdgeguardError('EG_USAGE', `missing the fleet CA: ${hint('ca', 'EDGEGUARD_CA', 'ca')}.`);
  if (client === 'required' || cert !== undefined || key !== undefined) {
    if (!cert)
      throw new EdgeguardError(
        'EG_USAGE',
        `missing the client certificate: ${hint('client-cert', 'EDGEGUARD_CLIENT_CERT', 'cert')}.`,
      );
    if (!key)
      throw new EdgeguardError(
        'EG_USAGE',
        `missing the client key: ${hint('client-key', 'EDGEGUARD_CLIENT_KEY', 'key')}.`,
      );
  }
  return { server, ca, ...(cert && key ? { cert, key } : {}) };
}

/** The connection the options describe, with the CA and the client pair read (PEM text). */
export function resolveConnection(o: ConnectionOptions, client: 'required' | 'optional' = 'required'): Connection {
  const p = connectionPaths(o, client);
  return {
    server: p.server,
    ca: readPemFile(p.ca, 'the fleet CA'),
    ...(p.cert && p.key
      ? { cert: readPemFile(p.cert, 'the client certificate'), key: readPemFile(p.key, 'the client key') }
      : {}),
  };
}
