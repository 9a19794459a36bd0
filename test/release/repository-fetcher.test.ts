/**
 * The fetcher of a static release repository (not director mode): it reads a plain web host over
 * http (TUF signs and hash-checks what it reads) within tuf-js's length limits, answers a refusal
 * with tuf-js's own DownloadHTTPError, refuses other URL schemes, and with the agent's egress
 * dialer reaches only listed endpoints (EG_EGRESS_DENIED before connecting otherwise).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { EgressDialer, type EgressDenial } from '../../src/fleet/index.ts';
import { planEgress } from '../../src/harden/index.ts';
import { initRepository, releasePaths, RepositoryFetcher } from '../../src/release/index.ts';
import { serveDirectory } from '../helpers/static-server.ts';
import { tempDir } from '../helpers/workspace.ts';

async function repository(t: Parameters<typeof tempDir>[0]) {
  const dir = join(await tempDir(t), 'releases');
  await initRepository({ dir });
  const server = await serveDirectory(t, releasePaths(dir).repository);
  const root = await readFile(join(releasePaths(dir).metadata, '1.root.json'));
  return { server, root, url: `${server.url}/metadata/1.root.json` };
}

test('the repository fetcher reads a static host within limits and refuses other schemes', async (t) => {
  const repo = await repository(t);
  const fetcher = new RepositoryFetcher();
  t.after(() => fetcher.close());
  assert.deepEqual(await fetcher.downloadBytes(repo.url, 1 << 20), repo.root);
  await assert.rejects(
    fetcher.downloadBytes(repo.url, 10),
    (e) => (e as Error).constructor.name === 'DownloadLengthMismatchError',
  );
  await assert.rejects(
    fetcher.downloadBytes(`${repo.server.url}/metadata/9.root.json`, 1 << 20),
    (e) => (e as Error).constructor.name === 'DownloadHTTPError' && (e as { statusCode: number }).statusCode === 404,
  );
  assert.throws(
    () => fetcher.fetch('ftp://127.0.0.1/metadata/1.root.json'),
    (e) => isEdgeguardError(e, 'EG_USAGE'),
  );
});

test("the repository fetcher keeps to the agent's egress allowlist: a listed endpoint, nothing else", async (t) => {
  const repo = await repository(t);
  const port = Number(new URL(repo.server.url).port);
  async function fetcherAllowing(endpoints: Array<{ host: string; port: number }>) {
    const denials: EgressDenial[] = [];
    const egress = {
      controlPlane: 'https://127.0.0.3:8443',
      dns: [],
      ntp: [],
      endpoints: endpoints.map((e) => ({ ...e, protocol: 'tcp' as const })),
    };
    const dialer = new EgressDialer(await planEgress({ egress }), (d) => denials.push(d));
    const fetcher = new RepositoryFetcher({ dialer });
    t.after(() => fetcher.close());
    return { fetcher, denials };
  }

  const listed = await fetcherAllowing([{ host: '127.0.0.1', port }]);
  assert.deepEqual(await listed.fetcher.downloadBytes(repo.url, 1 << 20), repo.root);
  assert.deepEqual(listed.denials, []);

  const cases = [
    // The control plane alone is listed: the repository host is not.
    { url: repo.url, endpoints: [], reason: /address not listed/ },
    // The host is listed on another port.
    { url: repo.url, endpoints: [{ host: '127.0.0.1', port: port + 1 }], reason: /not listed/ },
    // A name whose addresses are not listed: refused at resolution, before the first packet.
    {
      url: `http://localhost:${port}/metadata/1.root.json`,
      endpoints: [{ host: '127.0.0.2', port }],
      reason: /resolves to .*not listed/,
    },
  ];
  for (const c of cases) {
    const { fetcher, denials } = await fetcherAllowing(c.endpoints);
    await assert.rejects(fetcher.downloadBytes(c.url, 1 << 20), (e) => isEdgeguardError(e, 'EG_EGRESS_DENIED'), c.url);
    assert.equal(denials.length, 1, c.url);
    assert.match(denials[0]!.reason, c.reason);
  }
});
