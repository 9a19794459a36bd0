/**
 * The running agent connects only where agent.yaml's `egress:` says: with the upload pointed at a
 * control plane the allowlist does not name, journal forwarding is refused (EG_EGRESS_DENIED) before
 * any connection, the agent keeps serving, and the refusal is itself in the device's journal.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { FIXTURES } from '../helpers/workspace.ts';
import { startTestFleet } from '../server/fleet-helpers.ts';
import { serveFixture, startService, infer } from './serve-fixture.ts';

test('an upload to a host the egress allowlist does not list is refused and journaled', async (t) => {
  const fleet = await startTestFleet();
  t.after(() => fleet.stop());
  const f = await serveFixture(t);
  const device = await fleet.deviceCredential();
  await writeFile(join(f.dir, 'fleet-ca.pem'), fleet.ca.rootPem);
  await writeFile(join(f.dir, 'device.crt'), device.cert);
  await writeFile(join(f.dir, 'device.key'), device.key, { mode: 0o600 });
  const port = new URL(fleet.server.url).port;
  const agent = await startService(
    t,
    f.config({
      upload: { server: fleet.server.url, ca: 'fleet-ca.pem', cert: 'device.crt', key: 'device.key' },
      renewal: { enabled: false },
      journal: { forwardIntervalMs: 3_600_000 },
      egress: { controlPlane: `https://127.0.0.2:${port}` },
    }),
  );

  await assert.rejects(
    () => agent.journal!.forward(),
    (e: unknown) => isEdgeguardError(e, 'EG_EGRESS_DENIED') && /127\.0\.0\.1 port/.test(e.message),
  );
  const digit = await readFile(join(FIXTURES, 'digits', '9-0.png'));
  assert.equal((await infer(agent.url, digit, 'image/png')).body.label, '9', 'still serving');

  await agent.journal!.flush();
  const entries = await agent.journal!.journal.readFrom(0);
  const denial = entries.map((e) => e.event).find((e) => e.type === 'egress.denied');
  assert.ok(denial, entries.map((e) => e.event.type).join(', '));
  assert.deepEqual({ host: denial.details.host, port: denial.details.port }, { host: '127.0.0.1', port: Number(port) });
  assert.equal(await fleet.server.ctx.store.getDevice(device.deviceId).then((d) => d?.last_seen_at ?? null), null);
});
