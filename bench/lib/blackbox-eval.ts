/**
 * A black-box query attack against the agent's HTTP service (issue 17, item 3): the attacker has
 * no weights and no profile, only POST /v1/infer and its answers (verdict, label, the answering
 * model's probabilities), and a query budget.
 *
 * The attack is SimBA in the pixel basis (Guo, Gardner, You, Wilson, Weinberger, "Simple Black-box
 * Adversarial Attacks", ICML 2019, algorithm 1): take the pixels in random order; for each, try
 * x - step and then x + step on it; keep the first that lowers the true class's probability. Made
 * guard-aware, as the white-box adaptive attacks are: only stroke pixels (clean value > 0) move,
 * within an L-infinity bound `eps` of the clean digit, and an answer that is not `accept` (a
 * rejection or a flag) counts as a failed try, so the search stays on inputs the guard accepts.
 * Success: the service accepts the input and answers a wrong label. Inputs go as 8-bit PNG, as a
 * client would send them.
 *
 * The service runs in process (buildAgentApp over the real protected packages, ONNX Runtime and
 * the committed version-3 profile) on 127.0.0.1, on a simulated clock: every request advances it by
 * its real duration, and an attacker answered 429 waits Retry-After seconds on that clock (nothing
 * sleeps), so the time an attack would take is reported without spending it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import sharp from 'sharp';
import { readPublicSigningKey } from '../../src/crypto/index.ts';
import { buildAgentApp } from '../../src/agent/http-app.ts';
import type { AgentConfigInput } from '../../src/agent/config.ts';
import { openGuardedModel } from '../../src/runtime/index.ts';
import { mulberry32 } from '../../scripts/lib/mnist-split.ts';
import { benchAgentConfig, FIXTURES } from './agent-fixture.ts';
import { wilsonInterval } from './wilson.ts';

export interface BlackboxSettings {
  /** Queries (requests) per digit. */
  budget: number;
  /** SimBA step per pixel, and the L-infinity bound around the clean digit. */
  step: number;
  eps: number;
  /** Clean digits sent between two attack queries (to stay under the near-duplicate detector). */
  decoys: number;
  seed: number;
}

export interface AttackOutcome {
  /** The clean digit was accepted and answered correctly (else there is nothing to attack). */
  eligible: boolean;
  success: boolean;
  /** Requests until success (or the budget). */
  queries: number;
  /** Answers refused with 429 (budget or probing). */
  refused: number;
  /** Simulated seconds the attack took, waits included. */
  seconds: number;
}

interface Answer {
  status: number;
  verdict?: string;
  label?: number;
  scores?: number[];
  retryAfterS?: number;
}

/** The service and the attacker's side of it: one query = one POST, on the simulated clock. */
class Service {
  private now = 1_000_000;
  requests = 0;
  refused = 0;
  /** Set once the service listens. */
  url = '';

  clock(): number {
    return this.now;
  }

  wait(seconds: number): void {
    this.now += seconds * 1000;
  }

  async query(values: Float32Array): Promise<Answer> {
    const px = Buffer.alloc(784);
    for (let i = 0; i < 784; i++) px[i] = Math.round(Math.min(1, Math.max(0, values[i]!)) * 255);
    const png = await sharp(px, { raw: { width: 28, height: 28, channels: 1 } })
      .png()
      .toBuffer();
    const start = performance.now();
    const r = await fetch(`${this.url}/v1/infer`, {
      method: 'POST',
      headers: { 'content-type': 'image/png' },
      body: png,
    });
    const body = (await r.json()) as { verdict?: string; label?: string | null; scores?: number[] | null };
    this.now += performance.now() - start;
    this.requests++;
    if (r.status === 429) {
      this.refused++;
      return { status: 429, retryAfterS: Number(r.headers.get('retry-after') ?? '1') };
    }
    return {
      status: r.status,
      ...(body.verdict ? { verdict: body.verdict } : {}),
      ...(body.label != null ? { label: Number(body.label) } : {}),
      ...(body.scores ? { scores: body.scores } : {}),
    };
  }
}

/** One digit attacked within the budget. */
async function simba(
  svc: Service,
  clean: Float32Array,
  label: number,
  decoys: Float32Array[],
  s: BlackboxSettings,
  rand: () => number,
): Promise<AttackOutcome> {
  const startRequests = svc.requests;
  const startRefused = svc.refused;
  const startClock = svc.clock();
  let decoy = 0;
  const used = () => svc.requests - startRequests;
  let eligible = false;
  const outcome = (success: boolean): AttackOutcome => ({
    eligible,
    success,
    queries: used(),
    refused: svc.refused - startRefused,
    seconds: (svc.clock() - startClock) / 1000,
  });
  /** An answer to x, after the decoys; a 429 is waited out and the same query sent again. */
  const ask = async (x: Float32Array): Promise<Answer | undefined> => {
    for (let k = 0; k < s.decoys && used() < s.budget; k++) {
      const r = await svc.query(decoys[decoy++ % decoys.length]!);
      if (r.status === 429) svc.wait(r.retryAfterS!);
    }
    while (used() < s.budget) {
      const r = await svc.query(x);
      if (r.status !== 429) return r;
      svc.wait(r.retryAfterS!);
    }
    return undefined;
  };
  const first = await ask(clean);
  if (!first || first.verdict !== 'accept' || first.label !== label) return outcome(false);
  eligible = true;
  let p = first.scores![label]!;
  const x = Float32Array.from(clean);
  const stroke = [...clean.keys()].filter((i) => clean[i]! > 0);
  while (used() < s.budget) {
    // Pixel order: a fresh random permutation of the stroke pixels every pass.
    for (let i = stroke.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [stroke[i], stroke[j]] = [stroke[j]!, stroke[i]!];
    }
    let moved = false;
    for (const px of stroke) {
      for (const sign of [-1, 1]) {
        const v = Math.min(clean[px]! + s.eps, Math.max(clean[px]! - s.eps, x[px]! + sign * s.step));
        const bounded = Math.min(1, Math.max(0, v));
        if (Math.abs(bounded - x[px]!) < 1 / 255) continue;
        const old = x[px]!;
        x[px] = bounded;
        const r = await ask(x);
        if (!r) return outcome(false);
        if (r.verdict === 'accept' && r.label !== undefined && r.label !== label) return outcome(true);
        if (r.verdict === 'accept' && r.scores && r.scores[label]! < p) {
          p = r.scores[label]!;
          moved = true;
          break;
        }
        x[px] = old;
      }
      if (used() >= s.budget) return outcome(false);
    }
    if (!moved) return outcome(false); // no pixel lowers the true class any more
  }
  return outcome(false);
}

export interface BlackboxRun {
  name: string;
  probing: AgentConfigInput['probing'];
  decoys: number;
  outcomes: AttackOutcome[];
}

/** Attack every digit against a fresh service (probing settings per run), the same digits and seed for each run. */
export async function blackboxEvaluation(o: {
  digits: Float32Array[];
  labels: number[];
  decoys: Float32Array[];
  runs: Array<{ name: string; probing: AgentConfigInput['probing']; decoys: number }>;
  settings: Omit<BlackboxSettings, 'decoys'>;
}): Promise<BlackboxRun[]> {
  const out: BlackboxRun[] = [];
  for (const run of o.runs) {
    const dir = await mkdtemp(join(tmpdir(), 'eg-blackbox-'));
    try {
      const { config } = await benchAgentConfig(
        dir,
        { concurrency: 4 },
        {
          guard: { profile: join(FIXTURES, 'guard', 'mnist-cnn.pipeline.profile.json') },
          review: { enabled: false },
          probing: run.probing,
        },
      );
      const runtime = await openGuardedModel({
        models: config.models,
        publicKeys: await Promise.all(config.trust.publicKeys.map((p) => readPublicSigningKey(p))),
        contentKey: config.contentKey,
        guard: config.guard,
        profile: config.guard.profile,
      });
      const svc = new Service();
      const { app } = await buildAgentApp(config, runtime, { now: () => svc.clock() });
      await app.listen({ host: '127.0.0.1', port: 0 });
      const address = app.server.address();
      svc.url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
      const outcomes: AttackOutcome[] = [];
      const rand = mulberry32(o.settings.seed);
      try {
        for (let i = 0; i < o.digits.length; i++) {
          // Each digit from a new client identity would need another address; here one client attacks
          // them in turn, and its block (if any) is waited out on the simulated clock.
          outcomes.push(
            await simba(svc, o.digits[i]!, o.labels[i]!, o.decoys, { ...o.settings, decoys: run.decoys }, rand),
          );
        }
      } finally {
        await app.close();
        await runtime.release();
      }
      out.push({ ...run, outcomes });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  return out;
}

function pct(k: number, n: number): string {
  const [lo, hi] = wilsonInterval(k, n);
  return `${((100 * k) / Math.max(1, n)).toFixed(1)}% (${(100 * lo).toFixed(1)}%-${(100 * hi).toFixed(1)}%)`;
}

/** Success rate at each query budget (Wilson 95%), refusals and simulated time, one row per run. */
export function blackboxMarkdown(runs: BlackboxRun[], checkpoints: number[]): string {
  const head = `| service | attacker | digits attacked | ${checkpoints.map((q) => `success within ${q} queries`).join(' | ')} | refused (429) per digit, median | simulated time per digit, median |`;
  const lines = [head, `|${'---|'.repeat(checkpoints.length + 5)}`];
  for (const r of runs) {
    const attacked = r.outcomes.filter((x) => x.eligible);
    const n = attacked.length;
    const cells = checkpoints.map((q) => pct(attacked.filter((x) => x.success && x.queries <= q).length, n));
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
    lines.push(
      `| ${r.name} | ${r.decoys ? `${r.decoys} clean decoys before each query` : 'attack queries only'} | ${n} | ${cells.join(' | ')} | ${median(attacked.map((x) => x.refused))} | ${median(attacked.map((x) => x.seconds)).toFixed(1)} s |`,
    );
  }
  return lines.join('\n');
}
