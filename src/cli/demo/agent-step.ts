/**
 * Demo step of the inference service and the review queue: make the operators' review key, start
 * `edgeguard agent serve` (in process, on 127.0.0.1 with an ephemeral port) over the two protected
 * packages, send a legitimate digit (accepted), a doubtful one (flagged: answered by the fallback
 * and sealed to the review key in the spool) and noise (rejected), then open the spooled item on
 * the operator's side with the review private key.
 *
 * Then the same service as an enrolled fleet device (software key store, its own small control
 * plane): the agent renews its device certificate by itself (the demo control plane issues
 * 2-minute certificates, so two thirds of the lifetime has passed at start), journals its
 * security events (signed with the device key), and forwards them over mutual TLS into the
 * control plane's Merkle log, where a guard rejection is proven by an inclusion proof.
 */
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import YAML from 'yaml';
import {
  encodeSealPrivateKeyPem,
  encodeSealPublicKeyPem,
  generateSealKeyPair,
  writePrivateFile,
} from '../../crypto/index.ts';
import { loadAgentConfig, startAgent } from '../../agent/index.ts';
import { openReviewItem, reviewKeyId } from '../../fleet/index.ts';
import { decodeLogLeaf, verifyInclusion } from '../../audit/index.ts';
import type { DemoContext, DemoStep } from './context.ts';
import { startDemoFleet } from './fleet-device.ts';

async function until(what: string, cond: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`the demo timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The agent as an enrolled device: certificate renewal and the audit journal, forwarded and proven. */
async function fleetAgent(
  ctx: DemoContext,
  config: Record<string, unknown>,
  noisePng: Buffer,
): Promise<Record<string, unknown>> {
  // Two-minute device certificates (backdated 5 minutes for clock skew): due for renewal at once.
  const { server, controlPlane, deviceDir, deviceId } = await startDemoFleet(ctx, 'agent', {
    deviceCertDays: 2 / 1440,
  });
  const enrolled = { deviceId };
  try {
    ctx.say(
      `a second control plane on ${server.url} issues 2-minute device certificates, so this device is past two thirds of its certificate's lifetime as soon as it has one`,
    );
    ctx.command(
      `agent enroll --device ${deviceDir} --server ${server.url} --ca fleet-ca.pem   # software key store; approved: ${enrolled.deviceId}`,
    );

    const fleetConfig = {
      ...config,
      review: { publicKey: ctx.path('review.pub'), spool: { dir: ctx.path('agent-fleet-spool') } },
      upload: { device: deviceDir, intervalMs: 60_000 },
      renewal: { backoffInitialMs: 60_000 },
      journal: { forwardIntervalMs: 200 },
    };
    const configPath = ctx.path('agent-fleet.yaml');
    await writeFile(configPath, YAML.stringify(fleetConfig));
    const running = await startAgent(await loadAgentConfig(configPath));
    try {
      const before = running.identity!.serial;
      ctx.command(`agent serve --config ${configPath}   # upload.device: ${deviceDir}`);
      await until('the certificate renewal', () => running.renewer!.status().last !== null);
      const st = running.renewer!.status();
      if (st.last?.result !== 'renewed') throw new Error(`the demo renewal failed: ${st.last?.error ?? 'unknown'}`);
      ctx.say(
        `renewed by itself at start: serial ${before.slice(0, 12)}… -> ${st.serial.slice(0, 12)}… (notAfter ${st.notAfter}); GET /healthz shows it, /metrics has edgeguard_agent_cert_*`,
      );
      const res = await fetch(`${running.url}/v1/infer`, {
        method: 'POST',
        headers: { 'content-type': 'image/png' },
        body: noisePng,
      });
      const verdict = ((await res.json()) as { verdict: string }).verdict;
      const journal = running.journal!;
      await journal.flush();
      const lastSeq = journal.journal.lastSeq;
      await until('the journal to be forwarded', () => (journal.status().forwardedSeq ?? -1) >= lastSeq);
      ctx.say(
        `noise -> ${verdict.toUpperCase()}; the journal (${lastSeq + 1} entries, signed with the device key, fsynced per batch) was forwarded over mutual TLS with the renewed certificate`,
      );
      const log = controlPlane.audit.log!;
      await log.flush();
      const cp = await log.publishCheckpoint();
      let proven: { index: number; types: string[] } = { index: -1, types: [] };
      for (let i = 0; i < cp.size; i++) {
        const p = await log.inclusionProof(i, cp.size);
        const leaf = decodeLogLeaf(Buffer.from(p.leaf));
        if (leaf.origin.kind !== 'device' || leaf.origin.device.deviceId !== enrolled.deviceId) continue;
        proven.types.push(leaf.event.type);
        if (
          leaf.event.type === 'guard.rejected' &&
          proven.index < 0 &&
          verifyInclusion(p.leafHash, i, cp.size, p.proof, cp.root)
        )
          proven = { ...proven, index: i };
      }
      ctx.say(`in the control plane's Merkle log: ${proven.types.join(', ')}`);
      if (proven.index < 0) throw new Error('the guard rejection did not reach the Merkle log');
      ctx.command(`audit prove ${proven.index} --server ${server.url} ...`);
      ctx.say(
        `entry ${proven.index} (guard.rejected: verdict, reason codes and model; never the input) is in the signed tree of ${cp.size}: inclusion proof verified`,
      );
      return {
        deviceId: enrolled.deviceId,
        renewed: true,
        serialBefore: before,
        serialAfter: st.serial,
        journalEntries: lastSeq + 1,
        provenIndex: proven.index,
        logTypes: proven.types,
      };
    } finally {
      await running.close('demo done');
    }
  } finally {
    await server.close();
  }
}

export const agentStep: DemoStep = {
  id: 'agent',
  title:
    'Inference service: POST /v1/infer behind the guard; flagged inputs sealed to the review key; certificate renewal and the audit journal',
  async run(ctx) {
    const review = generateSealKeyPair();
    await writePrivateFile(ctx.path('review.key'), encodeSealPrivateKeyPem(review.privateKey));
    await writeFile(ctx.path('review.pub'), encodeSealPublicKeyPem(review.publicKey));
    ctx.command('review keygen -o review');
    ctx.say(
      `review key ${reviewKeyId(review.publicKey)}: review.key stays with the operators, review.pub goes to the device`,
    );
    const config = {
      listen: { host: '127.0.0.1', port: 0 },
      trust: { publicKeys: [ctx.state.publisherPubPath!] },
      contentKey: { file: ctx.state.contentKeyPath! },
      // The CNN is the primary, the MLP the ensemble member and fallback (as in the guard step).
      models: { primary: ctx.state.fallbackPackagePath!, ensemble: ctx.state.packagePath! },
      // The whole pipeline calibrated to a 4% budget; its calibrated combiner decides (version 3).
      guard: { profile: join(ctx.fixtures, 'guard', 'mnist-cnn.pipeline.profile.json') },
      review: { publicKey: ctx.path('review.pub'), spool: { dir: ctx.path('review-spool'), maxItems: 100 } },
      limits: { concurrency: 4 },
      log: { level: 'silent' },
    };
    const configPath = ctx.path('agent.yaml');
    await writeFile(configPath, YAML.stringify(config));
    const running = await startAgent(await loadAgentConfig(configPath));
    const fleetInputs: { noise?: Buffer } = {};
    const results: Array<{ input: string; verdict: string; label: string | null; review: string | null }> = [];
    try {
      ctx.command(`agent serve --config ${configPath}   # listening on ${running.url}`);
      ctx.say(`$ curl --data-binary @fixtures/digits/7-0.png -H 'content-type: image/png' ${running.url}/v1/infer`);
      const noise = Buffer.alloc(784);
      for (let i = 0; i < noise.length; i++) noise[i] = (i * 7919 + 13) % 251;
      const sharp = (await import('sharp')).default;
      const three = await readFile(join(ctx.fixtures, 'digits', '3-0.png'));
      // Rotated by 20 degrees: an ordinary input the models are unsure of, flagged and sealed for review.
      const rotated = await sharp(three).rotate(20, { background: '#000' }).resize(28, 28).png().toBuffer();
      const inputs: Array<[string, Buffer]> = [
        ['digits/7-0.png', await readFile(join(ctx.fixtures, 'digits', '7-0.png'))],
        ['digits/3-1.png', await readFile(join(ctx.fixtures, 'digits', '3-1.png'))],
        ['digits/3-0.png rotated 20 degrees (in memory)', rotated],
        [
          'noise (in memory)',
          await sharp(noise, { raw: { width: 28, height: 28, channels: 1 } })
            .png()
            .toBuffer(),
        ],
      ];
      fleetInputs.noise = inputs[3]![1];
      for (const [name, bytes] of inputs) {
        const res = await fetch(`${running.url}/v1/infer`, {
          method: 'POST',
          headers: { 'content-type': 'image/png' },
          body: bytes,
        });
        const body = (await res.json()) as {
          verdict: string;
          label: string | null;
          source: string | null;
          reasons: Array<{ message: string }>;
          review: { id?: string } | null;
          timings: { totalMs: number };
        };
        const why = body.reasons.length
          ? ` (${body.reasons
              .slice(0, 2)
              .map((r) => r.message)
              .join('; ')})`
          : '';
        ctx.say(
          `POST ${name} -> ${body.verdict.toUpperCase()}: ${body.label ?? 'no answer'}${body.source ? ` from the ${body.source} model` : ''}${why}${body.review?.id ? `; sealed for review as ${body.review.id.slice(0, 12)}…` : ''} [${body.timings.totalMs.toFixed(1)} ms]`,
        );
        results.push({ input: name, verdict: body.verdict, label: body.label, review: body.review?.id ?? null });
      }
    } finally {
      await running.close();
    }
    // The operator's side: the spool holds ciphertext only; the review key opens it.
    const spool = ctx.path('review-spool');
    const items = (await readdir(spool)).filter((n) => n.endsWith('.egr'));
    ctx.command(`review list --dir ${spool} --key review.key`);
    for (const name of items) {
      const opened = openReviewItem(await readFile(join(spool, name)), review.privateKey, name);
      ctx.say(
        `${opened.header.id.slice(0, 12)}…  ${opened.metadata.verdict} [${opened.metadata.reasons.map((r) => r.code).join(', ')}]  ${opened.metadata.contentType}, ${opened.input.length} bytes  (device answered ${opened.metadata.answer?.label ?? '-'})`,
      );
      opened.input.fill(0);
    }
    const fleet = await fleetAgent(ctx, config, fleetInputs.noise!);
    return { url: 'http://127.0.0.1:<ephemeral>', results, sealedItems: items.length, fleet };
  },
};
