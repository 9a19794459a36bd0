/**
 * The tuf-js fetcher over mutual TLS against a real control plane: it downloads repository files
 * with the device certificate, enforces tuf-js's length limit, and refuses a server that does not
 * chain to the pinned fleet CA; an HTTP refusal is tuf-js's own DownloadHTTPError. With the agent's
 * egress dialer it reaches only listed addresses (EG_EGRESS_DENIED before connecting otherwise).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { EgressDialer, type EgressDenial } from '../../src/fleet/index.ts';
import { planEgress } from '../../src/harden/index.ts';
import { FleetCa } from '../../src/pki/index.ts';
import { initRepository, MtlsFetcher, releasePaths } from '../../src/release/index.ts';
import { tufServerPlugin } from '../../src/server/routes/tuf.ts';
import { tempDir } from '../helpers/workspace.ts';
import { startTestFleet } from '../server/fleet-helpers.ts';

test('the mTLS fetcher reads the repository as the device, within limits, from the pinned CA only', async (t) => {
  const dataDir = await tempDir(t);
  await initRepository({ dir: join(dataDir, 'releases') });
  const fleet = await startTestFleet({ dataDir, plugins: [tufServerPlugin({ dataDir })] });
  t.after(() => fleet.stop());
  const device = await fleet.deviceCredential();
  const url = `${fleet.server.url}/v1/tuf/metadata/1.root.json`;
  const expected = await readFile(join(releasePaths(join(dataDir, 'releases')).metadata, '1.root.json'));

  const fetcher = new MtlsFetcher({ ca: fleet.ca.rootPem, cert: device.cert, key: device.key });
  t.after(() => fetcher.close());
  assert.deepEqual(await fetcher.downloadBytes(url, 1 << 20), expected);
  await assert.rejects(
    fetcher.downloadBytes(url, 10),
    (e) => (e as Error).constructor.name === 'DownloadLengthMismatchError',
  );
  await assert.rejects(
    fetcher.downloadBytes(`${fleet.server.url}/v1/tuf/metadata/9.root.json`, 1 << 20),
    (e) => (e as Error).constructor.name === 'DownloadHTTPError' && (e as { statusCode: number }).statusCode === 404,
  );

  const otherCa = await FleetCa.create(join(dataDir, 'other-ca'), 'another-passphrase');
  const stranger = new MtlsFetcher({ ca: otherCa.rootPem, cert: device.cert, key: device.key });
  t.after(() => stranger.close());
  await assert.rejects(stranger.downloadBytes(url, 1 << 20), /fetch failed/);
  assert.throws(() => fetcher.fetch('http://127.0.0.1/v1/tuf/metadata/1.root.json'), /https only/);
});

test("the mTLS fetcher keeps to the agent's egress allowlist: a listed control plane, nothing else", async (t) => {
  const dataDir = await tempDir(t);
  await initRepository({ dir: join(dataDir, 'releases') });
  const fleet = await startTestFleet({ dataDir, plugins: [tufServerPlugin({ dataDir })] });
  t.after(() => fleet.stop());
  const device = await fleet.deviceCredential();
  const port = Number(new URL(fleet.server.url).port);
  const path = '/v1/tuf/metadata/1.root.json';

  async function fetcherAllowing(allowed: string) {
    const denials: EgressDenial[] = [];
    const plan = await planEgress({ egress: { controlPlane: allowed, dns: [], ntp: [], endpoints: [] } });
    const dialer = new EgressDialer(plan, (d) => denials.push(d));
    const fetcher = new MtlsFetcher({ ca: fleet.ca.rootPem, cert: device.cert, key: device.key, dialer });
    t.after(() => fetcher.close());
    return { fetcher, denials };
  }

  const listed = await fetcherAllowing(fleet.server.url);
  assert.ok((await listed.fetcher.downloadBytes(`${fleet.server.url}${path}`, 1 << 20)).length > 0);
  assert.deepEqual(listed.denials, []);

  const cases = [
    // A literal address that is not listed: refused before connecting.
    { url: `${fleet.server.url}${path}`, allowed: `https://127.0.0.2:${port}`, reason: /address not listed/ },
    // A name whose addresses are not listed: refused at resolution, before the first packet.
    {
      url: `https://localhost:${port}${path}`,
      allowed: `https://127.0.0.2:${port}`,
      reason: /resolves to .*not listed/,
    },
  ];
  for (const c of cases) {
    const { fetcher, denials } = await fetcherAllowing(c.allowed);
    await assert.rejects(fetcher.downloadBytes(c.url, 1 << 20), (e) => isEdgeguardError(e, 'EG_EGRESS_DENIED'), c.url);
    assert.equal(denials.length, 1, c.url);
    assert.match(denials[0]!.reason, c.reason);
  }
});
