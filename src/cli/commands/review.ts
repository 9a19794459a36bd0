/**
 * `edgeguard review ...`: the operator's side of the review queue. Items are sealed on devices to
 * the review public key; only here, with the review private key, are they opened.
 *
 *   review keygen -o review             review.key (PKCS#8, 0600) + review.pub (SPKI)
 *   review list  --dir DIR [--key K]    items in a directory of *.egr (a spool copy or an export)
 *   review show  ID --dir DIR --key K [--out FILE]
 *   review label ID LABEL --dir DIR --key K [--by NAME] [--note TEXT]   appends to DIR/labels.jsonl
 *   review fetch --server URL --client-cert admin.crt --client-key admin.key --ca fleet-ca.pem --out DIR
 *                                       download the sealed items the control plane received
 */
import { Command, Option } from 'commander';
import { appendFile, readdir, readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import {
  encodeSealPrivateKeyPem,
  encodeSealPublicKeyPem,
  generateSealKeyPair,
  parseSealPrivateKeyPem,
  writePrivateFile,
  assertPrivateFileMode,
} from '../../crypto/index.ts';
import { EdgeguardError, FILE_CAPS, fsError, readBounded, readBoundedText } from '../../errors/index.ts';
import {
  openReviewItem,
  parseReviewItem,
  reviewKeyId,
  type ReviewHeader,
  type ReviewMetadata,
  spoolFileName,
  FleetClient,
  MAX_SEALED_BYTES,
  ReviewItemAnswer,
  ReviewPageAnswer,
} from '../../fleet/index.ts';
import { Output, globalOptions } from '../output.ts';
import { resolveConnection, withConnection, type ConnectionOptions } from '../connection.ts';

function group(program: Command, name: string, description: string): Command {
  return program.commands.find((c) => c.name() === name) ?? program.command(name).description(description);
}

async function readPrivateKey(path: string): Promise<KeyObject> {
  await assertPrivateFileMode(path);
  return parseSealPrivateKeyPem(await readBoundedText(path, FILE_CAPS.key, 'read the review private key'), path);
}

/** A sealed item is at most MAX_SEALED_BYTES: a larger file is not one, and is not buffered. */
function readReviewItemFile(file: string): Promise<Buffer> {
  return readBounded(file, MAX_SEALED_BYTES, 'read the review item');
}

interface Listed {
  file: string;
  header: ReviewHeader;
}

async function listItems(dir: string): Promise<Listed[]> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith('.egr')).sort();
  } catch (e) {
    throw fsError(e, dir, 'read the review directory');
  }
  const out: Listed[] = [];
  for (const n of names) {
    const file = join(dir, n);
    const bytes = await readReviewItemFile(file);
    out.push({ file, header: parseReviewItem(bytes, file) });
  }
  return out;
}

async function findItem(dir: string, id: string): Promise<Listed> {
  if (!/^[0-9a-f]{4,32}$/.test(id))
    throw new EdgeguardError(
      'EG_USAGE',
      `"${id}" is not an item id (4 to 32 hex digits; see \`edgeguard review list\`).`,
    );
  const matches = (await listItems(dir)).filter((l) => l.header.id.startsWith(id));
  if (matches.length === 0) throw new EdgeguardError('EG_NOT_FOUND', `no review item ${id} in ${dir}.`);
  if (matches.length > 1)
    throw new EdgeguardError('EG_USAGE', `${id} matches ${matches.length} items; give more digits.`);
  return matches[0]!;
}

interface LabelRecord {
  id: string;
  label: string;
  by?: string;
  note?: string;
  at: string;
}

/**
 * Who sent each fetched item, as the control plane recorded it from the device certificate
 * (the sealed item itself does not name its device): one JSON line per item in DIR/devices.jsonl.
 */
const DEVICES_FILE = 'devices.jsonl';

async function readItemDevices(dir: string): Promise<Map<string, string>> {
  const text = await readFile(join(dir, DEVICES_FILE), 'utf8').catch(() => '');
  const m = new Map<string, string>();
  for (const line of text.split('\n')) {
    try {
      const r = JSON.parse(line) as { id?: unknown; deviceId?: unknown };
      if (typeof r.id === 'string' && typeof r.deviceId === 'string') m.set(r.id, r.deviceId);
    } catch {
      // an empty or torn line: ignore
    }
  }
  return m;
}

async function readLabels(dir: string): Promise<Map<string, LabelRecord>> {
  const text = await readFile(join(dir, 'labels.jsonl'), 'utf8').catch(() => '');
  const m = new Map<string, LabelRecord>();
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      // Each member is printed in a sentence: a record with one of another type is skipped.
      const r = JSON.parse(line) as Record<keyof LabelRecord, unknown> | null;
      const optional = (v: unknown) => v === undefined || typeof v === 'string';
      if (
        typeof r?.id === 'string' &&
        typeof r.label === 'string' &&
        typeof r.at === 'string' &&
        optional(r.by) &&
        optional(r.note)
      )
        m.set(r.id, r as LabelRecord);
    } catch {
      // a torn last line: ignore
    }
  }
  return m;
}

function summary(m: ReviewMetadata): string {
  const reasons = m.reasons.map((r) => r.code).join(', ') || '-';
  const answer = m.answer ? `${m.answer.label} (${m.answer.source}, ${m.answer.confidence.toFixed(3)})` : '-';
  return `${m.verdict} [${reasons}] answer ${answer}`;
}

/** `--review-key` (the documented name) or `--key` (its earlier name, hidden). */
interface ReviewKeyOptions {
  reviewKey?: string;
  key?: string;
}

function requireReviewKey(o: ReviewKeyOptions): string {
  const path = o.reviewKey ?? o.key;
  if (!path) throw new EdgeguardError('EG_USAGE', 'pass --review-key with the review private key (review.key).');
  return path;
}

export function registerReviewCommands(program: Command): void {
  const review = group(
    program,
    'review',
    'the human-review queue: keys, and flagged inputs opened with the review private key',
  );

  review
    .command('keygen')
    .description(
      'make the review key pair: PREFIX.key (X25519 PKCS#8, mode 0600, stays with operators) and PREFIX.pub (for agent.yaml review.publicKey)',
    )
    .requiredOption('-o, --out <prefix>', 'output prefix, e.g. review')
    .action(async (opts: { out: string }, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      const pair = generateSealKeyPair();
      await writePrivateFile(`${opts.out}.key`, encodeSealPrivateKeyPem(pair.privateKey));
      try {
        await writeFile(`${opts.out}.pub`, encodeSealPublicKeyPem(pair.publicKey), { flag: 'wx' });
      } catch (e) {
        throw fsError(e, `${opts.out}.pub`, 'write the review public key');
      }
      const keyId = reviewKeyId(pair.publicKey);
      out.result({ ok: true, keyId, privateKey: `${opts.out}.key`, publicKey: `${opts.out}.pub` }, [
        `review key ${keyId}: ${opts.out}.key (keep it off devices), ${opts.out}.pub (put it in agent.yaml review.publicKey)`,
      ]);
    });

  review
    .command('list')
    .description(
      'list sealed items in a directory (a copy of a device spool or an export); with --key, open each and show the findings',
    )
    .requiredOption('--dir <dir>', 'directory of *.egr items')
    .option('--review-key <file>', 'review private key (review.key): open each item')
    .addOption(new Option('--key <file>').hideHelp())
    .action(async (opts: ReviewKeyOptions & { dir: string }, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      const keyPath = opts.reviewKey ?? opts.key;
      const key = keyPath ? await readPrivateKey(keyPath) : undefined;
      const labels = await readLabels(opts.dir);
      const devices = await readItemDevices(opts.dir);
      const rows = [];
      for (const l of await listItems(opts.dir)) {
        const row: Record<string, unknown> = {
          id: l.header.id,
          deviceId: devices.get(l.header.id) ?? null,
          created: new Date(l.header.createdMs).toISOString(),
          keyId: l.header.recipientKeyId,
          bytes: l.header.ciphertext.length,
          label: labels.get(l.header.id)?.label ?? null,
        };
        if (key) {
          const opened = openReviewItem(await readReviewItemFile(l.file), key, l.file);
          row.metadata = opened.metadata;
          row.inputBytes = opened.input.length;
          opened.input.fill(0);
        }
        rows.push(row);
      }
      out.result(
        { ok: true, items: rows },
        rows.length === 0
          ? ['no review items']
          : rows.map(
              (r) =>
                `${String(r.id)}  ${String(r.created)}${r.deviceId ? `  from ${String(r.deviceId)}` : ''}  key ${String(r.keyId)}  ${r.metadata ? summary(r.metadata as ReviewMetadata) : `${String(r.bytes)} bytes sealed`}${r.label ? `  label ${String(r.label)}` : ''}`,
            ),
      );
    });

  review
    .command('show')
    .description(
      'open one item with the review private key: the guard findings, and the input (written only with --out)',
    )
    .argument('<id>', 'item id or a unique prefix')
    .requiredOption('--dir <dir>', 'directory of *.egr items')
    .option('--review-key <file>', 'review private key (review.key); required')
    .addOption(new Option('--key <file>').hideHelp())
    .option('-o, --out <file>', 'write the decrypted input here (operator machine only)')
    .action(async (id: string, opts: ReviewKeyOptions & { dir: string; out?: string }, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      const key = await readPrivateKey(requireReviewKey(opts));
      const item = await findItem(opts.dir, id);
      const opened = openReviewItem(await readReviewItemFile(item.file), key, item.file);
      try {
        if (opts.out) await writePrivateFile(opts.out, opened.input);
        const label = (await readLabels(opts.dir)).get(opened.header.id) ?? null;
        out.result(
          {
            ok: true,
            id: opened.header.id,
            metadata: opened.metadata,
            inputBytes: opened.input.length,
            inputWritten: opts.out ?? null,
            label,
          },
          [
            `item ${opened.header.id} (${opened.metadata.createdAt}, ${opened.metadata.contentType}, ${opened.input.length} bytes)`,
            `verdict: ${summary(opened.metadata)}`,
            ...opened.metadata.reasons.map((r) => `  - ${r.stage}: ${r.message}`),
            ...(opened.metadata.primary
              ? [
                  `primary model said ${opened.metadata.primary.label} (${opened.metadata.primary.confidence.toFixed(3)})`,
                ]
              : []),
            ...(opts.out ? [`input written to ${opts.out} (mode 0600)`] : []),
            ...(label ? [`label: ${label.label}${label.by ? ` by ${label.by}` : ''} at ${label.at}`] : []),
          ],
        );
      } finally {
        opened.input.fill(0);
      }
    });

  review
    .command('label')
    .description(
      'record the true label of an item (opened first, so only real items are labelled); appends to DIR/labels.jsonl',
    )
    .argument('<id>', 'item id or a unique prefix')
    .argument('<label>', 'the correct label, e.g. 7')
    .requiredOption('--dir <dir>', 'directory of *.egr items')
    .option('--review-key <file>', 'review private key (review.key); required')
    .addOption(new Option('--key <file>').hideHelp())
    .option('--by <name>', 'who labelled it')
    .option('--note <text>', 'a note')
    .action(
      async (
        id: string,
        label: string,
        opts: ReviewKeyOptions & { dir: string; by?: string; note?: string },
        cmd: Command,
      ) => {
        const out = new Output(globalOptions(cmd));
        if (!/^[\w .:-]{1,64}$/.test(label))
          throw new EdgeguardError(
            'EG_USAGE',
            'a label is 1 to 64 letters, digits, spaces, dots, colons, dashes or underscores.',
          );
        const key = await readPrivateKey(requireReviewKey(opts));
        const item = await findItem(opts.dir, id);
        const opened = openReviewItem(await readReviewItemFile(item.file), key, item.file);
        opened.input.fill(0);
        const record: LabelRecord = {
          id: opened.header.id,
          label,
          ...(opts.by ? { by: opts.by } : {}),
          ...(opts.note ? { note: opts.note } : {}),
          at: new Date().toISOString(),
        };
        try {
          await appendFile(join(opts.dir, 'labels.jsonl'), JSON.stringify(record) + '\n', { mode: 0o600 });
        } catch (e) {
          throw fsError(e, join(opts.dir, 'labels.jsonl'), 'append to');
        }
        out.result(
          { ok: true, ...record, previous: opened.metadata.answer ?? null },
          `labelled ${record.id} as ${label} (the device answered ${opened.metadata.answer?.label ?? 'nothing'})`,
        );
      },
    );

  withConnection(
    review
      .command('ack')
      .description(
        'acknowledge review items you have fetched (admin certificate): the control plane no longer keeps them',
      )
      .argument('<ids...>', 'item ids (32 hex characters, as `review list` shows them)'),
  ).action(async (ids: string[], opts: ConnectionOptions, cmd: Command) => {
    const out = new Output(globalOptions(cmd));
    const c = resolveConnection(opts, 'required');
    const client = new FleetClient({ server: c.server, ca: c.ca, cert: c.cert!, key: c.key! });
    try {
      for (const id of ids) {
        if (!/^[0-9a-f]{32}$/.test(id))
          throw new EdgeguardError('EG_USAGE', `${id} is not a review item id (32 hex characters).`);
        await client.call('POST', `/v1/review/items/${id}/ack`);
      }
      out.result(
        { ok: true, acknowledged: ids },
        `acknowledged ${ids.length} items; the control plane no longer keeps them`,
      );
    } finally {
      client.close();
    }
  });

  withConnection(
    review
      .command('fetch')
      .description(
        'download the sealed items the control plane received (admin certificate) into DIR, still encrypted; then use list/show/label',
      ),
  )
    .requiredOption('-o, --out <dir>', 'directory for the *.egr items')
    .action(async (opts: ConnectionOptions & { out: string }, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      const c = resolveConnection(opts, 'required');
      const client = new FleetClient({ server: c.server, ca: c.ca, cert: c.cert!, key: c.key! });
      try {
        await mkdir(opts.out, { recursive: true, mode: 0o700 });
        const have = new Set((await readdir(opts.out)).filter((n) => n.endsWith('.egr')));
        let after: string | undefined;
        let fetched = 0;
        let skipped = 0;
        for (;;) {
          const { items } = await client.callChecked(
            ReviewPageAnswer,
            'review items',
            'GET',
            `/v1/review/items?limit=500${after ? `&after=${after}` : ''}`,
          );
          if (items.length === 0) break;
          for (const it of items) {
            const name = spoolFileName(it.createdMs, it.id);
            after = it.id;
            if (have.has(name)) {
              skipped++;
              continue;
            }
            const r = await client.callChecked(ReviewItemAnswer, 'review item', 'GET', `/v1/review/items/${it.id}`);
            const bytes = Buffer.from(r.item, 'base64');
            parseReviewItem(bytes, `item ${it.id} from the server`);
            await writeFile(join(opts.out, name), bytes, { mode: 0o600 });
            const device = { id: it.id, deviceId: it.deviceId, receivedAt: it.receivedAt };
            await appendFile(join(opts.out, DEVICES_FILE), `${JSON.stringify(device)}\n`, { mode: 0o600 });
            fetched++;
          }
        }
        out.result(
          { ok: true, fetched, skipped, dir: opts.out },
          `fetched ${fetched} sealed items into ${opts.out} (${skipped} already there); open them with \`edgeguard review list --dir ${opts.out} --key review.key\``,
        );
      } finally {
        client.close();
      }
    });
}
