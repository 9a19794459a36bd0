/** Demo steps of the model package: keys, pack + sign, verify, in-memory inference, tampering refused. */
import { copyFile, open, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  encodeContentKeyFile,
  encodePrivateKeyPem,
  encodePublicKeyPem,
  generateContentKey,
  generateSigningKey,
  readContentKeyFile,
  readPrivateSigningKey,
  readPublicSigningKey,
  wipe,
  writePrivateFile,
} from '../../crypto/index.ts';
import { isEdgeguardError } from '../../errors/index.ts';
import { loadProtectedModel } from '../../inference/index.ts';
import { packModel, parseModelMetadata, verifyPackage, FIXED_HEADER_BYTES } from '../../model/index.ts';
import { writeFile } from 'node:fs/promises';
import YAML from 'yaml';
import type { DemoStep } from './context.ts';
import { engineLine } from '../model-options.ts';

export const keysStep: DemoStep = {
  id: 'keys',
  title: 'Make a model content key and a publisher signing key',
  async run(ctx) {
    const contentKeyPath = ctx.path('model.key');
    const key = generateContentKey();
    await writePrivateFile(contentKeyPath, encodeContentKeyFile(key));
    wipe(key.bytes);
    ctx.command(`key new --type content -o ${contentKeyPath}`);
    ctx.say(`content key ${key.kid} (256-bit, mode 0600)`);
    const pair = generateSigningKey('ecdsa-p256');
    const prefix = ctx.path('publisher');
    await writePrivateFile(`${prefix}.key`, encodePrivateKeyPem(pair.privateKey));
    await writeFile(`${prefix}.pub`, encodePublicKeyPem(pair.publicKey));
    ctx.command(`key new --type signing -o ${prefix}`);
    ctx.say(`publisher key ${pair.keyId.slice(0, 16)}… (ECDSA P-256)`);
    Object.assign(ctx.state, { contentKeyPath, publisherKeyPath: `${prefix}.key`, publisherPubPath: `${prefix}.pub` });
    return { contentKeyId: key.kid, publisherKeyId: pair.keyId };
  },
};

/** Pack fixtures/models/FILE with its metadata file (mnist.meta.yaml unless given), signed by the demo publisher. */
export async function packDemoModel(
  ctx: Parameters<DemoStep['run']>[0],
  file: string,
  name: string,
  version: number,
  suite: 'aes-256-gcm' | 'chacha20-poly1305',
  metaFile = 'mnist.meta.yaml',
  outputPath = ctx.path(`${name}.egm`),
) {
  const meta = YAML.parse(await readFile(join(ctx.fixtures, 'models', metaFile), 'utf8')) as Record<string, unknown>;
  const metadata = parseModelMetadata({ ...meta, name, version, format: 'onnx', label: `demo ${file}` });
  const contentKey = await readContentKeyFile(ctx.state.contentKeyPath!);
  try {
    const r = await packModel({
      inputPath: join(ctx.fixtures, 'models', file),
      outputPath,
      contentKey,
      signer: await readPrivateSigningKey(ctx.state.publisherKeyPath!),
      metadata,
      suite,
      chunkSize: 16 * 1024,
    });
    ctx.command(
      `model pack fixtures/models/${file} --key model.key --sign publisher.key --name ${name} --version ${version} --meta fixtures/models/${metaFile} --cipher ${suite} --chunk-size 16k -o ${outputPath}`,
    );
    ctx.say(
      `${r.parsed.header.plaintextLength} bytes -> ${r.packageBytes} bytes, ${suite}, signed (DSSE/in-toto, OMS v1.0 predicate)`,
    );
    return r;
  } finally {
    wipe(contentKey.bytes);
  }
}

export const packStep: DemoStep = {
  id: 'pack',
  title: 'Encrypt and sign the demo models (MLP as primary, CNN as the second architecture)',
  async run(ctx) {
    const primary = await packDemoModel(ctx, 'mnist-mlp.onnx', 'mnist', 3, 'aes-256-gcm');
    const second = await packDemoModel(ctx, 'mnist-cnn.onnx', 'mnist-cnn', 1, 'chacha20-poly1305');
    ctx.state.packagePath = primary.packagePath;
    ctx.state.fallbackPackagePath = second.packagePath;
    return { packages: [primary.packagePath, second.packagePath] };
  },
};

export const verifyStep: DemoStep = {
  id: 'verify',
  title: 'Verify signature, header and every chunk (no plaintext written)',
  async run(ctx) {
    const pub = await readPublicSigningKey(ctx.state.publisherPubPath!);
    const contentKey = await readContentKeyFile(ctx.state.contentKeyPath!);
    try {
      const r = await verifyPackage(ctx.state.packagePath!, { publicKeys: [pub], contentKey });
      ctx.command(`model verify ${ctx.state.packagePath} --pub publisher.pub --key model.key`);
      ctx.say(
        `OK: signature verified, ${r.chunks} chunks authenticated, plaintext digest matches; ${engineLine(r.engine!)}`,
      );
      return { chunks: r.chunks, signedBy: r.signedBy, engine: r.engine };
    } finally {
      wipe(contentKey.bytes);
    }
  },
};

export const runStep: DemoStep = {
  id: 'run',
  title: 'Decrypt into memory and classify sample digits (ONNX Runtime from a buffer)',
  async run(ctx) {
    const pub = await readPublicSigningKey(ctx.state.publisherPubPath!);
    const contentKey = await readContentKeyFile(ctx.state.contentKeyPath!);
    let model;
    try {
      model = await loadProtectedModel(ctx.state.packagePath!, { publicKeys: [pub], contentKey });
    } finally {
      wipe(contentKey.bytes);
    }
    const digitsDir = join(ctx.fixtures, 'digits');
    const files = (await readdir(digitsDir))
      .filter((f) => f.endsWith('.png'))
      .sort()
      .slice(0, 10);
    ctx.command(`run ${ctx.state.packagePath} --key model.key --pub publisher.pub --input fixtures/digits/<digit>.png`);
    let correct = 0;
    const predictions = [];
    try {
      for (const f of files) {
        const expected = f.split('-')[0];
        const c = await model.classifyImage(await readFile(join(digitsDir, f)));
        if (c.label === expected) correct++;
        predictions.push({ file: f, expected, label: c.label, confidence: c.confidence });
        ctx.say(
          `${f}: predicted ${c.label} (confidence ${c.confidence.toFixed(3)})${c.label === expected ? '' : `  <- expected ${expected}`}`,
        );
      }
    } finally {
      await model.release();
    }
    ctx.say(`${correct}/${files.length} correct`);
    return { correct, total: files.length, predictions };
  },
};

export const tamperStep: DemoStep = {
  id: 'tamper',
  title: 'A tampered copy is refused',
  async run(ctx) {
    const tampered = ctx.path('tampered.egm');
    await copyFile(ctx.state.packagePath!, tampered);
    await copyFile(`${ctx.state.packagePath!}.sig.json`, `${tampered}.sig.json`);
    const fh = await open(tampered, 'r+');
    try {
      const size = (await fh.stat()).size;
      const at = Math.floor((FIXED_HEADER_BYTES + size) / 2);
      const b = Buffer.alloc(1);
      await fh.read(b, 0, 1, at);
      b[0]! ^= 0x01;
      await fh.write(b, 0, 1, at);
      ctx.say(`flipped one bit at byte ${at} of a copy`);
    } finally {
      await fh.close();
    }
    const pub = await readPublicSigningKey(ctx.state.publisherPubPath!);
    const contentKey = await readContentKeyFile(ctx.state.contentKeyPath!);
    ctx.command(`model verify ${tampered} --pub publisher.pub --key model.key`);
    try {
      await verifyPackage(tampered, { publicKeys: [pub], contentKey });
    } catch (e) {
      if (isEdgeguardError(e)) {
        ctx.say(`refused: ${e.code}: ${e.message}`);
        return { refused: true, code: e.code };
      }
      throw e;
    } finally {
      wipe(contentKey.bytes);
    }
    throw new Error('the tampered package was accepted');
  },
};
