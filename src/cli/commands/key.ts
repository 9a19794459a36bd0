/** `edgeguard key new`: model content keys and publisher signing keys. */
import { Command, Option } from 'commander';
import {
  encodeContentKeyFile,
  encodePrivateKeyPem,
  encodePublicKeyPem,
  generateContentKey,
  generateSigningKey,
  wipe,
  writePrivateFile,
  type SigningAlgorithm,
} from '../../crypto/index.ts';
import { writeFile } from 'node:fs/promises';
import { fsError } from '../../errors/index.ts';
import { Output, globalOptions } from '../output.ts';

export function keyCommand(program: Command): Command {
  return program.commands.find((c) => c.name() === 'key') ?? program.command('key').description('make and handle keys');
}

export function registerKeyCommands(program: Command): void {
  keyCommand(program)
    .command('new')
    .description('make a model content key (256-bit, JWK, 0600) or a publisher signing key pair')
    .addOption(new Option('--type <type>', 'content or signing').choices(['content', 'signing']).makeOptionMandatory())
    .requiredOption('-o, --out <path>', 'content: the key file; signing: path prefix for PREFIX.key and PREFIX.pub')
    .addOption(new Option('--alg <alg>', 'signing algorithm').choices(['ecdsa-p256', 'ed25519']).default('ecdsa-p256'))
    .option('--force', 'overwrite existing files')
    .action(async (opts: { type: string; out: string; alg: SigningAlgorithm; force?: boolean }, cmd: Command) => {
      const out = new Output(globalOptions(cmd));
      if (opts.type === 'content') {
        const key = generateContentKey();
        try {
          await writePrivateFile(opts.out, encodeContentKeyFile(key), opts.force);
        } finally {
          wipe(key.bytes);
        }
        out.result({ ok: true, type: 'content', path: opts.out, kid: key.kid }, [
          `content key ${key.kid}`,
          `written to ${opts.out} (mode 0600)`,
        ]);
        return;
      }
      const pair = generateSigningKey(opts.alg);
      const keyPath = `${opts.out}.key`;
      const pubPath = `${opts.out}.pub`;
      await writePrivateFile(keyPath, encodePrivateKeyPem(pair.privateKey), opts.force);
      await writeFile(pubPath, encodePublicKeyPem(pair.publicKey), { flag: opts.force ? 'w' : 'wx' }).catch((e) => {
        throw fsError(e, pubPath, 'write');
      });
      out.result(
        {
          ok: true,
          type: 'signing',
          algorithm: pair.algorithm,
          keyId: pair.keyId,
          privateKey: keyPath,
          publicKey: pubPath,
        },
        [
          `${pair.algorithm} signing key ${pair.keyId.slice(0, 16)}…`,
          `private: ${keyPath} (mode 0600)`,
          `public:  ${pubPath}`,
        ],
      );
    });
}
