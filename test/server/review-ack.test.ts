/**
 * Review items on the control plane: an operator acknowledges an item it has fetched (it leaves
 * the server), and items older than the retention period are pruned.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateSealKeyPair } from '../../src/crypto/index.ts';
import { sealReviewItem } from '../../src/fleet/index.ts';
import { reviewServerPlugin } from '../../src/server/routes/review.ts';
import { startTestFleet, type TestFleet } from './fleet-helpers.ts';
import { eventually } from '../helpers/wait.ts';

const DAY = 86_400_000;

describe('review items: acknowledge and retention', () => {
  let fleet: TestFleet;
  before(async () => {
    fleet = await startTestFleet({ plugins: [reviewServerPlugin({ retentionDays: 1, pruneIntervalMs: 200 })] });
  });
  after(async () => fleet.stop());

  const deliver = async (device: { cert: string; key: string }, createdMs = Date.now()) => {
    const { publicKey } = generateSealKeyPair();
    const sealed = sealReviewItem(
      publicKey,
      { contentType: 'image/png', verdict: 'flag', reasons: [] },
      Buffer.from('x'),
      createdMs,
    );
    const r = await fleet.client(device).call<{ id: string }>('POST', '/v1/review/items', {
      id: sealed.id,
      item: sealed.bytes.toString('base64'),
    });
    return r.body.id;
  };
  const listed = async (admin: { cert: string; key: string }) =>
    (await fleet.client(admin).call<{ items: Array<{ id: string }> }>('GET', '/v1/review/items')).body.items.map(
      (i) => i.id,
    );

  it('an admin acknowledges an item; it leaves the list; a device cannot acknowledge', async () => {
    const admin = await fleet.adminCredential();
    const device = await fleet.deviceCredential();
    const id = await deliver(device);
    assert.ok((await listed(admin)).includes(id));
    assert.equal((await fleet.client(device).send('POST', `/v1/review/items/${id}/ack`)).status, 403);
    const ack = await fleet
      .client(admin)
      .send<{ id: string; acknowledged: boolean }>('POST', `/v1/review/items/${id}/ack`);
    assert.equal(ack.status, 200, JSON.stringify(ack.body));
    assert.equal((await listed(admin)).includes(id), false);
    assert.equal((await fleet.client(admin).send('POST', `/v1/review/items/${id}/ack`)).status, 404);
  });

  it('items received longer ago than the retention period are pruned', async () => {
    const admin = await fleet.adminCredential();
    const device = await fleet.deviceCredential();
    const fresh = await deliver(device);
    const old = await deliver(device);
    // Received two days ago (as if it had waited that long on the server).
    await fleet.server.ctx.store.db
      .withTables<{ review_items: { id: string; received_at: string } }>()
      .updateTable('review_items')
      .set({ received_at: new Date(Date.now() - 2 * DAY).toISOString() })
      .where('id', '=', old)
      .execute();
    await eventually('the old item pruned', async () => !(await listed(admin)).includes(old));
    assert.ok((await listed(admin)).includes(fresh));
  });
});
