/**
 * Judging `nft -j list table inet edgeguard`: a listing recorded from nft 1.0.6 with the generated
 * rule set loaded, and variants of it that must not pass as "loaded" (policy accept, no output
 * hook, another table), plus bytes that are not nft's JSON at all.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { parseEgressTableListing } from '../../src/harden/index.ts';
import { FIXTURES } from '../helpers/workspace.ts';

interface Listing {
  nftables: Array<Record<string, Record<string, unknown>>>;
}

async function recorded(): Promise<Listing> {
  return JSON.parse(await readFile(join(FIXTURES, 'harden', 'nft-1.0.6-list-table.json'), 'utf8')) as Listing;
}

function chainOf(listing: Listing): Record<string, unknown> {
  const chain = listing.nftables.find((o) => o.chain)?.chain;
  assert.ok(chain);
  return chain;
}

test('the recorded listing of the loaded rule set is "loaded", with the drop counter', async () => {
  const listing = await recorded();
  assert.deepEqual(parseEgressTableListing(JSON.stringify(listing)), { status: 'loaded', droppedPackets: 0 });
  const counter = listing.nftables.find((o) => o.counter)!.counter!;
  counter.packets = 7;
  assert.deepEqual(parseEgressTableListing(JSON.stringify(listing)), { status: 'loaded', droppedPackets: 7 });
});

test('a table that would not enforce is reported as such', async () => {
  const accept = await recorded();
  chainOf(accept).policy = 'accept';
  assert.equal(parseEgressTableListing(JSON.stringify(accept)).status, 'not-enforcing');
  const noHook = await recorded();
  delete chainOf(noHook).hook;
  assert.equal(parseEgressTableListing(JSON.stringify(noHook)).status, 'not-enforcing');
  const otherTable = await recorded();
  chainOf(otherTable).table = 'someone-else';
  assert.equal(parseEgressTableListing(JSON.stringify(otherTable)).status, 'not-enforcing');
});

test('bad input is refused with EG_FORMAT', () => {
  for (const text of ['', 'Error: x', '[]', '{}', '{"nftables": {}}', '{"nftables": [{"counter": {"table": 1}}]}'])
    assert.throws(
      () => parseEgressTableListing(text),
      (e) => isEdgeguardError(e, 'EG_FORMAT'),
      text,
    );
});

test('property: any text is judged or refused with a typed error, never "loaded" without a drop policy', () => {
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.json()), (text) => {
      try {
        assert.notEqual(parseEgressTableListing(text).status, 'loaded');
      } catch (e) {
        assert.ok(isEdgeguardError(e, 'EG_FORMAT'), String(e));
      }
    }),
    { numRuns: 2000 },
  );
});
