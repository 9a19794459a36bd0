/**
 * Demo step of the inference service and the review queue: make the operators' review key, start
 * `edgeguard agent serve` (in process, on 127.0.0.1 with an ephemeral port) over the two protected
 * packages, send a legitimate digit (accepted), a doubtful one (flagged: answered by the fallback
 * and sealed to the review key in the spool) and noise (rejected), then open the spooled item on
 * the operator's side with the review private key.
 */
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import YAML from 'yaml';
import { encodeSealPrivateKeyPem, encodeSealPublicKeyPem, generateSealKeyPair, writePrivateFile } from '../../crypto/index.ts';
import { loadAgentConfig } from '../../agent/config.ts';
import { startAgent } from '../../agent/serve.ts';
import { openReviewItem, reviewKeyId } from '../../agent/review-item.ts';
import type { DemoStep } from './context.ts';

export const agentStep: DemoStep = {
  id: 'agent',
  title: 'Inference service: POST /v1/infer behind the guard; flagged inputs sealed to the review key',
  async run(ctx) {
    const review = generateSealKeyPair();
    await writePrivateFile(ctx.path('review.key'), encodeSealPrivateKeyPem(review.privateKey));
    await writeFile(ctx.path('review.pub'), encodeSealPublicKeyPem(review.publicKey));
    ctx.command('review keygen -o review');
    ctx.say(`review key ${reviewKeyId(review.publicKey)}: review.key stays with the operators, review.pub goes to the device`);
    const config = {
      listen: { host: '127.0.0.1', port: 0 },
      trust: { publicKeys: [ctx.state.publisherPubPath!] },
      contentKey: { file: ctx.state.contentKeyPath! },
      // The CNN is the primary, the MLP the ensemble member and fallback (as in the guard step).
      models: { primary: ctx.state.fallbackPackagePath!, ensemble: ctx.state.packagePath! },
      guard: { profile: join(ctx.fixtures, 'guard', 'mnist-cnn.profile.json') },
      review: { publicKey: ctx.path('review.pub'), spool: { dir: ctx.path('review-spool'), maxItems: 100 } },
      limits: { concurrency: 4 },
      log: { level: 'silent' },
    };
    const configPath = ctx.path('agent.yaml');
    await writeFile(configPath, YAML.stringify(config));
    const running = await startAgent(await loadAgentConfig(configPath));
    const results: Array<{ input: string; verdict: string; label: string | null; review: string | null }> = [];
    try {
      ctx.command(`agent serve --config ${configPath}   # listening on ${running.url}`);
      ctx.say(`$ curl --data-binary @fixtures/digits/7-0.png -H 'content-type: image/png' ${running.url}/v1/infer`);
      const noise = Buffer.alloc(784);
      for (let i = 0; i < noise.length; i++) noise[i] = (i * 7919 + 13) % 251;
      const sharp = (await import('sharp')).default;
      const inputs: Array<[string, Buffer]> = [
        ['digits/7-0.png', await readFile(join(ctx.fixtures, 'digits', '7-0.png'))],
        ['digits/3-1.png', await readFile(join(ctx.fixtures, 'digits', '3-1.png'))],
        ['noise (in memory)', await sharp(noise, { raw: { width: 28, height: 28, channels: 1 } }).png().toBuffer()],
      ];
      for (const [name, bytes] of inputs) {
        const res = await fetch(`${running.url}/v1/infer`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: bytes });
        const body = (await res.json()) as { verdict: string; label: string | null; source: string | null; reasons: Array<{ message: string }>; review: { id?: string } | null; timings: { totalMs: number } };
        const why = body.reasons.length ? ` (${body.reasons.slice(0, 2).map((r) => r.message).join('; ')})` : '';
        ctx.say(`POST ${name} -> ${body.verdict.toUpperCase()}: ${body.label ?? 'no answer'}${body.source ? ` from the ${body.source} model` : ''}${why}${body.review?.id ? `; sealed for review as ${body.review.id.slice(0, 12)}…` : ''} [${body.timings.totalMs.toFixed(1)} ms]`);
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
      ctx.say(`${opened.header.id.slice(0, 12)}…  ${opened.metadata.verdict} [${opened.metadata.reasons.map((r) => r.code).join(', ')}]  ${opened.metadata.contentType}, ${opened.input.length} bytes  (device answered ${opened.metadata.answer?.label ?? '-'})`);
      opened.input.fill(0);
    }
    return { url: 'http://127.0.0.1:<ephemeral>', results, sealedItems: items.length };
  },
};
