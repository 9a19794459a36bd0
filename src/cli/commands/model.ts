/** `edgeguard model pack|verify|inspect|unpack`: the protected model package (.egm). */
import { Command, Option } from 'commander';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { basename } from 'node:path';
import YAML from 'yaml';
import {
  SIGSTORE_BUNDLE_MEDIA_TYPE,
  envelopeToBundle,
  parseCipherSuite,
  readContentKeyFile,
  readPrivateSigningKey,
  wipe,
  type CipherSuite,
} from '../../crypto/index.ts';
import { EdgeguardError, FILE_CAPS, fsError, readBoundedText } from '../../errors/index.ts';
import {
  DEFAULT_CHUNK_SIZE,
  inspectPackage,
  packModel,
  parseModelMetadata,
  readSignatureFile,
  unpackPackage,
  verifyPackage,
  type InspectResult,
  type ModelMetadata,
  type PackageHeader,
} from '../../model/index.ts';
import { collect, parseByteSize, parseNonNegativeInt } from '../args.ts';
import { engineLine, readTrustedKeys } from '../model-options.ts';
import { Output, globalOptions } from '../output.ts';

interface PackOpts {
  key: string;
  sign: string;
  name: string;
  version: number;
  label?: string;
  format: 'onnx' | 'opaque';
  meta?: string;
  cipher: string;
  chunkSize: number;
  out: string;
  force?: boolean;
}

export function registerModelCommands(program: Command): void {
  const model = program
    .command('model')
    .description('protected model packages: encrypted, chunk-authenticated, signed');

  model
    .command('pack')
    .description('encrypt and sign a model into NAME.egm and NAME.egm.sig.json')
    .argument('<model>', 'the plaintext model file (ONNX, or any file with --format opaque)')
    .requiredOption('--key <file>', 'content key (from `key new --type content`)')
    .requiredOption('--sign <file>', 'publisher private key (from `key new --type signing`)')
    .requiredOption('--name <name>', 'model name')
    .requiredOption('--version <n>', 'release number, a whole number that only grows', parseNonNegativeInt)
    .option('--label <text>', 'free-form version label, e.g. 3.1-rc2')
    .addOption(new Option('--format <format>', 'model format').choices(['onnx', 'opaque']).default('onnx'))
    .option('--meta <file.yaml>', 'metadata: inputs, outputs (labels) and preprocessing')
    .addOption(
      new Option('--cipher <suite>', 'AEAD cipher suite')
        .choices(['aes-256-gcm', 'chacha20-poly1305'])
        .default('aes-256-gcm'),
    )
    .option('--chunk-size <bytes>', 'plaintext bytes per chunk (e.g. 64k, 1M)', parseByteSize, DEFAULT_CHUNK_SIZE)
    .requiredOption('-o, --out <file>', 'output package, e.g. mnist.egm')
    .option('--force', 'overwrite existing output')
    .action(async (modelPath: string, opts: PackOpts, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      const suite: CipherSuite = parseCipherSuite(opts.cipher);
      const metadata = await buildMetadata(modelPath, opts);
      const contentKey = await readContentKeyFile(opts.key);
      const signer = await readPrivateSigningKey(opts.sign);
      const inputSize = await stat(modelPath).then(
        (st) => st.size,
        (e) => {
          throw fsError(e, modelPath, 'read the model');
        },
      );
      const bar = out.progress('packing', inputSize * 2);
      try {
        const r = await packModel({
          inputPath: modelPath,
          outputPath: opts.out,
          contentKey,
          signer,
          metadata,
          suite,
          chunkSize: opts.chunkSize,
          overwrite: opts.force,
          onProgress: (done) => bar.update(done),
        });
        bar.stop();
        const h = r.parsed.header;
        out.result(
          {
            ok: true,
            package: r.packagePath,
            signature: r.signaturePath,
            header: headerJson(h),
            headerSha256: r.parsed.digest.toString('hex'),
            signedBy: signer.keyId,
            packageBytes: r.packageBytes,
          },
          [
            `packed ${metadata.name} v${metadata.version}${metadata.label ? ` (${metadata.label})` : ''} -> ${r.packagePath}`,
            `  ${h.suite}, ${h.chunkSize}-byte chunks, ${h.plaintextLength} plaintext bytes, key ${h.keyId}`,
            `  model sha256 ${h.plaintextSha256.toString('hex')}`,
            `  signed by ${signer.keyId.slice(0, 16)}… -> ${r.signaturePath}`,
          ],
        );
      } finally {
        bar.stop();
        wipe(contentKey.bytes);
      }
    });

  model
    .command('verify')
    .description('check the signature and header; with --key, every chunk too (no plaintext is written)')
    .argument('<package>', '.egm file')
    .option('--pub <file>', 'trusted publisher public key (repeatable)', collect)
    .option('--key <file>', 'content key: also authenticate every chunk and the plaintext digest')
    .option('--sig <file>', 'signature envelope (default PACKAGE.sig.json)')
    .action(async (pkgPath: string, opts: { pub?: string[]; key?: string; sig?: string }, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      const publicKeys = await readTrustedKeys(opts.pub);
      const contentKey = opts.key ? await readContentKeyFile(opts.key) : undefined;
      try {
        const bar = contentKey
          ? out.progress('verifying', (await stat(pkgPath).catch(() => ({ size: 0 }))).size)
          : undefined;
        const r = await verifyPackage(pkgPath, {
          publicKeys,
          contentKey,
          signaturePath: opts.sig,
          onProgress: (d) => bar?.update(d),
        }).finally(() => bar?.stop());
        out.result(
          {
            ok: true,
            package: pkgPath,
            header: headerJson(r.header),
            headerSha256: r.headerSha256,
            signedBy: r.signedBy,
            chunksAuthenticated: r.chunksAuthenticated,
            chunks: r.chunks,
            verified: { signature: true, header: true, chunks: r.chunksAuthenticated },
            ...(r.engine ? { engine: r.engine } : {}),
          },
          r.chunksAuthenticated
            ? [
                `OK ${pkgPath}: ${r.header.metadata.name} v${r.header.metadata.version}: signature, header and every chunk verified`,
                `  signature by ${r.signedBy.slice(0, 16)}…; all ${r.chunks} chunks authenticated, every signed shard digest matches`,
                ...(r.engine ? [`  ${engineLine(r.engine)}`] : []),
              ]
            : [
                `SIGNATURE OK ${pkgPath}: ${r.header.metadata.name} v${r.header.metadata.version}: signature and header verified, contents NOT checked`,
                `  signature by ${r.signedBy.slice(0, 16)}…; the ${r.chunks} encrypted chunks were not read: pass --key to authenticate every chunk and the signed digests`,
              ],
        );
      } finally {
        if (contentKey) wipe(contentKey.bytes);
      }
    });

  model
    .command('bundle')
    .description(
      "the package's signature as a Sigstore bundle (v0.3, key-based DSSE) for model_signing or cosign; accepted back wherever a signature is read",
    )
    .argument('<package>', '.egm file')
    .option('--sig <file>', 'signature envelope (default PACKAGE.sig.json)')
    .option('-o, --out <file>', 'output file (default PACKAGE.sigstore.json)')
    .option('--force', 'overwrite an existing output')
    .action(async (pkgPath: string, opts: { sig?: string; out?: string; force?: boolean }, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      const envelope = await readSignatureFile(opts.sig ?? `${pkgPath}.sig.json`);
      const keyId = envelope.signatures[0]!.keyid;
      const target = opts.out ?? `${pkgPath}.sigstore.json`;
      await writeFile(target, JSON.stringify(envelopeToBundle(envelope, keyId), null, 2) + '\n', {
        flag: opts.force ? 'w' : 'wx',
      }).catch((e: unknown) => Promise.reject(fsError(e, target, 'write the bundle to')));
      out.result({ ok: true, bundle: target, mediaType: SIGSTORE_BUNDLE_MEDIA_TYPE, keyHint: keyId }, [
        `wrote ${target} (${SIGSTORE_BUNDLE_MEDIA_TYPE}, key hint ${keyId.slice(0, 16)}…)`,
      ]);
    });

  model
    .command('inspect')
    .description('show the header and the signature subjects (no key needed; nothing verified)')
    .argument('<package>', '.egm file')
    .option('--sig <file>', 'signature envelope (default PACKAGE.sig.json)')
    .action(async (pkgPath: string, opts: { sig?: string }, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      const r = await inspectPackage(pkgPath, opts.sig);
      out.result({ ok: true, ...inspectJson(r) }, inspectLines(r));
    });

  model
    .command('unpack')
    .description('decrypt a package to a plaintext file: the explicit escape hatch (writes plaintext to disk)')
    .argument('<package>', '.egm file')
    .requiredOption('--key <file>', 'content key')
    .option('--pub <file>', 'trusted publisher public key (repeatable)', collect)
    .option('--sig <file>', 'signature envelope (default PACKAGE.sig.json)')
    .requiredOption('-o, --out <file>', 'plaintext output file')
    .option('--force', 'overwrite an existing output file')
    .action(
      async (
        pkgPath: string,
        opts: { key: string; pub?: string[]; sig?: string; out: string; force?: boolean },
        cmd: Command,
      ) => {
        const out = new Output(globalOptions(cmd));
        const publicKeys = await readTrustedKeys(opts.pub);
        const contentKey = await readContentKeyFile(opts.key);
        out.warn(
          `unpack writes the PLAINTEXT model to ${opts.out}; anyone who can read that file has the model. Prefer \`edgeguard run\`, which decrypts into memory only.`,
        );
        try {
          const bar = out.progress('unpacking', (await stat(pkgPath).catch(() => ({ size: 0 }))).size);
          const r = await unpackPackage(pkgPath, opts.out, {
            publicKeys,
            contentKey,
            signaturePath: opts.sig,
            overwrite: opts.force,
            onProgress: (d) => bar.update(d),
          }).finally(() => bar.stop());
          out.result(
            {
              ok: true,
              package: pkgPath,
              output: opts.out,
              plaintextBytes: r.header.plaintextLength,
              plaintextSha256: r.header.plaintextSha256.toString('hex'),
              signedBy: r.signedBy,
            },
            `unpacked ${r.header.metadata.name} v${r.header.metadata.version} (${r.header.plaintextLength} bytes) to ${opts.out}`,
          );
        } finally {
          wipe(contentKey.bytes);
        }
      },
    );
}

async function buildMetadata(modelPath: string, opts: PackOpts): Promise<ModelMetadata> {
  let fromFile: Record<string, unknown> = {};
  if (opts.meta) {
    const text = await readBoundedText(opts.meta, FILE_CAPS.config, 'read the metadata file');
    let parsed: unknown;
    try {
      parsed = YAML.parse(text);
    } catch (e) {
      throw new EdgeguardError(
        'EG_CONFIG',
        `${opts.meta} is not valid YAML (${(e as Error).message.split('\n')[0]}).`,
        { cause: e },
      );
    }
    if (parsed !== null && parsed !== undefined && (typeof parsed !== 'object' || Array.isArray(parsed))) {
      throw new EdgeguardError(
        'EG_CONFIG',
        `${opts.meta} must be a YAML mapping (inputs, outputs, preprocessing, label).`,
      );
    }
    fromFile = (parsed as Record<string, unknown>) ?? {};
  }
  const candidate: Record<string, unknown> = {
    ...fromFile,
    name: opts.name,
    version: opts.version,
    format: opts.format,
  };
  if (opts.label !== undefined) candidate.label = opts.label;
  if (opts.format === 'onnx' && !Array.isArray(fromFile.inputs)) {
    let bytes: Buffer;
    try {
      bytes = await readFile(modelPath);
    } catch (e) {
      throw fsError(e, modelPath, 'read the model');
    }
    // ONNX Runtime loads only for the one subcommand that needs it (pack, to describe the model).
    const { describeOnnx } = await import('../../inference/index.ts');
    const described = await describeOnnx(bytes);
    candidate.inputs = described.inputs;
    if (!Array.isArray(fromFile.outputs)) candidate.outputs = described.outputs;
  }
  try {
    return parseModelMetadata(
      candidate,
      opts.meta ? `metadata (${basename(opts.meta)} with --name/--version)` : 'metadata',
    );
  } catch (e) {
    if (e instanceof EdgeguardError) throw new EdgeguardError('EG_CONFIG', e.message);
    throw e;
  }
}

export function headerJson(h: PackageHeader) {
  return {
    formatVersion: h.version,
    cipherSuite: h.suite,
    chunkSize: h.chunkSize,
    keyId: h.keyId,
    plaintextLength: h.plaintextLength,
    plaintextSha256: h.plaintextSha256.toString('hex'),
    salt: h.salt.toString('hex'),
    metadata: h.metadata,
  };
}

function inspectJson(r: InspectResult) {
  return {
    package: r.path,
    packageBytes: r.packageBytes,
    chunks: r.chunks,
    headerSha256: r.headerSha256,
    header: headerJson(r.header),
    signature: r.signature ?? null,
    verified: false,
  };
}

function inspectLines(r: InspectResult): string[] {
  const h = r.header;
  const m = h.metadata;
  const lines = [
    `${r.path} (${r.packageBytes} bytes, ${r.chunks} chunks)  [not verified: inspect needs no key]`,
    `  model       ${m.name} v${m.version}${m.label ? ` (${m.label})` : ''}, format ${m.format}`,
    `  cipher      ${h.suite}, ${h.chunkSize}-byte chunks`,
    `  key id      ${h.keyId}`,
    `  plaintext   ${h.plaintextLength} bytes, sha256 ${h.plaintextSha256.toString('hex')}`,
    `  header      sha256 ${r.headerSha256}`,
  ];
  for (const i of m.inputs)
    lines.push(
      `  input       ${i.name} ${i.dtype} [${i.shape.join(',')}]${i.range ? ` range ${i.range.min}..${i.range.max}` : ''}`,
    );
  for (const o of m.outputs)
    lines.push(
      `  output      ${o.name} ${o.dtype} [${o.shape.join(',')}]${o.labels ? ` labels ${o.labels.slice(0, 10).join(',')}${o.labels.length > 10 ? ',…' : ''}` : ''}`,
    );
  if (m.preprocessing) {
    const p = m.preprocessing;
    lines.push(`  preprocess  ${p.type} ${p.colorSpace} ${p.width}x${p.height} ${p.layout} scale ${p.scale}`);
  }
  const s = r.signature;
  if (s && 'subjects' in s) {
    for (const sub of s.subjects) lines.push(`  signed      ${sub.name} sha256 ${sub.sha256} (${s.predicateType})`);
    lines.push(`  key ids     ${s.keyIds.join(', ')}`);
  } else if (s) {
    lines.push(`  signature   unreadable: ${s.error}`);
  }
  return lines;
}
