/**
 * Whether the egress rule set is loaded in the running kernel: `nft -j list table inet edgeguard`
 * (libnftables JSON, nft(8) and libnftables-json(5)) must show the output chain hooked with policy
 * drop. Generated rules nobody loaded protect nothing, so the preflight looks.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { z } from 'zod';
import { EdgeguardError } from '../errors/index.ts';
import { NFT_DROP_COUNTER, NFT_TABLE } from './nftables.ts';

const run = promisify(execFile);

export type EgressTableState =
  | { status: 'loaded'; droppedPackets: number }
  | { status: 'absent' }
  | { status: 'not-enforcing'; reason: string }
  | { status: 'unreadable'; reason: string };

const nftListing = z.object({
  nftables: z.array(
    z.looseObject({
      chain: z
        .looseObject({ table: z.string(), hook: z.string().optional(), policy: z.string().optional() })
        .optional(),
      counter: z.looseObject({ table: z.string(), name: z.string(), packets: z.number().int().min(0) }).optional(),
    }),
  ),
});

/** Judge `nft -j list table inet edgeguard` output; EG_FORMAT when it is not nft's JSON. */
export function parseEgressTableListing(text: string): EgressTableState {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new EdgeguardError('EG_FORMAT', 'nft printed something that is not JSON; is it nftables 0.9 or later?', {
      cause: e,
    });
  }
  const listing = nftListing.safeParse(value);
  if (!listing.success)
    throw new EdgeguardError('EG_FORMAT', "nft's JSON listing does not have the expected shape (libnftables-json).");
  const objects = listing.data.nftables.filter((o) => (o.chain ?? o.counter)?.table === NFT_TABLE);
  const output = objects.find((o) => o.chain?.hook === 'output')?.chain;
  if (!output) return { status: 'not-enforcing', reason: `table inet ${NFT_TABLE} has no chain on the output hook` };
  if (output.policy !== 'drop')
    return { status: 'not-enforcing', reason: `its output chain's policy is ${output.policy ?? 'unset'}, not drop` };
  const counter = objects.find((o) => o.counter?.name === NFT_DROP_COUNTER)?.counter;
  return { status: 'loaded', droppedPackets: counter?.packets ?? 0 };
}

/** The table's state and nft's JSON listing it was judged from (absent or unreadable: no listing). */
export async function listEgressTable(nft: string): Promise<{ state: EgressTableState; listing?: string }> {
  let stdout: string;
  try {
    ({ stdout } = await run(nft, ['-j', 'list', 'table', 'inet', NFT_TABLE], { maxBuffer: 16 * 1024 * 1024 }));
  } catch (e) {
    const stderr = String((e as { stderr?: unknown }).stderr ?? '');
    if (/No such file or directory/.test(stderr)) return { state: { status: 'absent' } };
    const firstLine = stderr.split('\n')[0] || (e as Error).message;
    return {
      state: { status: 'unreadable', reason: `nft could not list the ruleset (${firstLine.trim()}); run as root` },
    };
  }
  return { state: parseEgressTableListing(stdout), listing: stdout };
}

export async function readEgressTableState(nft: string): Promise<EgressTableState> {
  return (await listEgressTable(nft)).state;
}
