/**
 * Runs inside the test's "device" network namespace: tries each destination once and prints one
 * JSON line per probe, `{ "probe", "ok", "detail" }`. An attempt the rule set drops shows up as
 * a timeout; the test reads the nft counters as well, so a drop is seen, not just inferred.
 *
 *   node --import tsx netns-probe.ts '[{"kind":"https","host":"10.0.0.2","port":8443,"ca":"root.pem"},{"kind":"dns","server":"10.0.0.53","name":"cp.test"}]'
 */
import { Resolver } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';

/** An HTTPS GET verified against the CA in `ca` (a PEM file), or an A query to one resolver. */
type Probe = { kind: 'https'; host: string; port: number; ca: string } | { kind: 'dns'; server: string; name: string };

/** Long enough for an answer on a veth pair, short enough to keep a dropped attempt cheap. */
const ATTEMPT_MS = 1500;

function httpsGet(host: string, port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path: '/', ca: readFileSync(ca), timeout: ATTEMPT_MS }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(`${res.statusCode} ${body.trim()}`));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

async function dnsQuery(server: string, name: string): Promise<string> {
  const resolver = new Resolver({ timeout: ATTEMPT_MS, tries: 1 });
  resolver.setServers([server]);
  return (await resolver.resolve4(name)).join(',');
}

async function attempt(probe: Probe): Promise<{ ok: boolean; detail: string }> {
  try {
    const detail =
      probe.kind === 'https'
        ? await httpsGet(probe.host, probe.port, probe.ca)
        : await dnsQuery(probe.server, probe.name);
    return { ok: true, detail };
  } catch (e) {
    return { ok: false, detail: (e as NodeJS.ErrnoException).code ?? (e as Error).message };
  }
}

const probes = JSON.parse(process.argv[2]!) as Probe[];
const results = await Promise.all(probes.map(attempt));
process.stdout.write(JSON.stringify(results.map((r, i) => ({ probe: probes[i], ...r }))) + '\n');
