/**
 * Shared set-up of the inference-service tests: the two demo architectures packed into real
 * protected packages (CNN primary, MLP ensemble/fallback), the pump sensor model (pump-anomaly.egm,
 * for the tensor-only tests), a review key pair, the calibrated guard
 * profile of fixtures/guard, and a running service on 127.0.0.1 (port 0) or a unix socket.
 */
import { writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import sharp from 'sharp';
import {
  encodeSealPrivateKeyPem,
  encodeSealPublicKeyPem,
  generateSealKeyPair,
  writePrivateFile,
  type SealKeyPair,
} from '../../src/crypto/index.ts';
import { agentConfig, type AgentConfig, type AgentConfigInput } from '../../src/agent/config.ts';
import { startAgent, type RunningAgent, type StartAgentOptions } from '../../src/agent/serve.ts';
import { packDemoModel } from '../helpers/packages.ts';
import { startChild, type StartedChild } from '../helpers/wait.ts';
import { CLI, FIXTURES, tempDir, writeKeys } from '../helpers/workspace.ts';

export interface ServeFixture {
  dir: string;
  review: SealKeyPair;
  reviewKeyPath: string;
  spoolDir: string;
  /** A config input with everything set (override parts per test). */
  base: AgentConfigInput;
  config(overrides?: Partial<AgentConfigInput>): AgentConfig;
}

export async function serveFixture(t: TestContext): Promise<ServeFixture> {
  const dir = await tempDir(t, 'eg-serve-');
  const keys = await writeKeys(dir);
  for (const name of ['mnist-cnn', 'mnist-mlp', 'pump-anomaly'] as const) await packDemoModel(dir, keys, name);
  const review = generateSealKeyPair();
  const reviewKeyPath = join(dir, 'review.key');
  await writePrivateFile(reviewKeyPath, encodeSealPrivateKeyPem(review.privateKey));
  await writeFile(join(dir, 'review.pub'), encodeSealPublicKeyPem(review.publicKey));
  const spoolDir = join(dir, 'spool');
  const base: AgentConfigInput = {
    listen: { host: '127.0.0.1', port: 0 },
    trust: { publicKeys: ['publisher.pub'] },
    contentKey: { file: 'publisher-model.key' },
    models: { primary: 'mnist-cnn.egm', ensemble: 'mnist-mlp.egm' },
    guard: { profile: join(FIXTURES, 'guard', 'mnist-cnn.profile.json') },
    review: { publicKey: 'review.pub', spool: { dir: 'spool' } },
    log: { level: 'silent' },
  };
  return {
    dir,
    review,
    reviewKeyPath,
    spoolDir,
    base,
    config: (overrides = {}) => agentConfig({ ...base, ...overrides }, dir),
  };
}

export async function startService(
  t: TestContext,
  config: AgentConfig,
  o: StartAgentOptions = {},
): Promise<RunningAgent> {
  const running = await startAgent(config, o);
  t.after(() => running.close());
  return running;
}

/**
 * The compiled `edgeguard agent serve --config PATH` as a child process (`npm run build` first),
 * resolved with its URL once it says it is serving; killed when the test ends.
 */
export async function startServeProcess(t: TestContext, configPath: string): Promise<StartedChild<string>> {
  const started = await startChild(
    process.execPath,
    [CLI, 'agent', 'serve', '--config', configPath],
    (_out, err) => /serving on (http:\/\/[\d.:]+)/.exec(err)?.[1],
    { what: 'edgeguard agent serve' },
  );
  t.after(() => {
    if (started.child.exitCode === null) started.child.kill('SIGKILL');
  });
  return started;
}

/** 28x28 values 0..1 as PNG bytes (what a camera or client would send). */
export async function pngOf(values: ArrayLike<number>, compressionLevel = 6): Promise<Buffer> {
  const px = Buffer.alloc(784);
  for (let i = 0; i < 784; i++) px[i] = Math.max(0, Math.min(255, Math.round(values[i]! * 255)));
  return sharp(px, { raw: { width: 28, height: 28, channels: 1 } })
    .png({ compressionLevel })
    .toBuffer();
}

export async function infer(
  url: string,
  body: Uint8Array | string,
  contentType: string,
): Promise<{ status: number; body: Record<string, unknown> & { error?: { code: string; message: string } } }> {
  const r = await fetch(`${url}/v1/infer`, { method: 'POST', headers: { 'content-type': contentType }, body });
  const text = await r.text();
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(text) as Record<string, unknown>;
  } catch {
    parsed = { raw: text };
  }
  return { status: r.status, body: parsed };
}

/** POST with node:http on a fresh connection (no pooling), so concurrent requests really are concurrent. */
export function postFresh(
  url: string,
  body: Uint8Array,
  contentType: string,
): Promise<{
  status: number;
  body: Record<string, unknown> & { error?: { code: string } };
  retryAfter: string | undefined;
}> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      `${url}/v1/infer`,
      {
        method: 'POST',
        agent: false,
        headers: { 'content-type': contentType, 'content-length': body.length, connection: 'close' },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          try {
            resolve({
              status: res.statusCode ?? 0,
              body: JSON.parse(Buffer.concat(chunks).toString('utf8')),
              retryAfter: res.headers['retry-after'] as string | undefined,
            });
          } catch (e) {
            reject(e);
          }
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** JSON tensor bodies the strict schema refuses with 400 EG_BAD_REQUEST (nothing is coerced), for a model taking `dims`. */
export function strictTensorCases(dims: number[]): Array<[string, string, string, number, string]> {
  const n = dims.reduce((a, b) => a * b, 1);
  const data = (first: unknown) => [first, ...new Array<number>(n - 1).fill(0)];
  const bodies: Array<[string, unknown]> = [
    ['a numeric string', { tensor: { dims, data: data('0.5') } }],
    ['a null value', { tensor: { dims, data: data(null) } }],
    ['a nested array', { tensor: { dims, data: data([0]) } }],
    ['string dims', { tensor: { dims: dims.map(String), data: data(0) } }],
    ['an unknown key in the tensor', { tensor: { dims, data: data(0), dtype: 'float32' } }],
    ['an unknown top-level key', { tensor: { dims, data: data(0) }, model: 'x' }],
  ];
  return bodies.map(([name, body]) => [name, JSON.stringify(body), 'application/json', 400, 'EG_BAD_REQUEST']);
}
