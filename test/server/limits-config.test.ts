/**
 * `edgeguard server --config FILE`: the limits in YAML, parsed strictly, and applied by the server
 * the CLI starts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { EdgeguardError } from '../../src/errors/index.ts';
import { parseServerConfigYaml } from '../../src/server/index.ts';
import { startChild } from '../helpers/wait.ts';

const run = promisify(execFile);
const CLI = join(import.meta.dirname, '..', '..', 'bin', 'edgeguard.js');

function refusal(text: string): string {
  try {
    parseServerConfigYaml(text, 'server.yaml');
  } catch (e) {
    assert.ok(e instanceof EdgeguardError);
    assert.equal(e.code, 'EG_CONFIG');
    return e.message;
  }
  assert.fail(`accepted: ${text}`);
}

describe('server configuration (YAML)', () => {
  it('reads the limits it names, and nothing for an empty file', () => {
    assert.deepEqual(
      parseServerConfigYaml('limits:\n  connectionsPerAddress: 4000\n  connectionRatePerAddress: 0.5\n', 'f'),
      {
        limits: { connectionsPerAddress: 4000, connectionRatePerAddress: 0.5 },
      },
    );
    assert.deepEqual(parseServerConfigYaml('', 'f'), {});
  });

  it('refuses an unknown key, a wrong type, a value out of range and bytes that are not YAML, naming the place', () => {
    assert.match(
      refusal('limits:\n  connectionsPerAdress: 10\n'),
      /server\.yaml is invalid at limits: .*connectionsPerAdress/,
    );
    assert.match(refusal('limit:\n  connectionsPerAddress: 10\n'), /invalid at the top level: .*limit/);
    assert.match(refusal('limits:\n  connectionsPerAddress: "10"\n'), /invalid at limits\.connectionsPerAddress/);
    assert.match(refusal('limits:\n  connectionsPerAddress: 0\n'), /invalid at limits\.connectionsPerAddress/);
    assert.match(refusal('limits:\n  requestTimeoutMs: 5\n'), /invalid at limits\.requestTimeoutMs/);
    assert.match(refusal('limits:\n  connectionRatePerAddress: -1\n'), /invalid at limits\.connectionRatePerAddress/);
    assert.match(refusal('limits: [1, 2]\n'), /invalid at limits/);
    assert.match(refusal('limits: {\n'), /server\.yaml is not valid YAML/);
    assert.match(refusal('- just\n- a list\n'), /invalid at the top level/);
  });

  it(
    '`edgeguard server --config` applies the limits, and refuses a bad file before it starts',
    { timeout: 60_000 },
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'eg-server-config-'));
      const env = { ...process.env, EDGEGUARD_CA_PASSPHRASE: 'config-test-passphrase' };
      try {
        const bad = join(dir, 'bad.yaml');
        writeFileSync(bad, 'limits:\n  connectionsPerAddress: many\n');
        const r = await run(
          process.execPath,
          [CLI, 'server', '--data', join(dir, 'data'), '--listen', '127.0.0.1:0', '--config', bad],
          { env },
        ).catch((e: { code: number; stderr: string }) => e);
        assert.equal((r as { code: number }).code, 2);
        assert.match(
          (r as { stderr: string }).stderr,
          /EG_CONFIG: .*bad\.yaml is invalid at limits\.connectionsPerAddress/,
        );

        // One connection per address, the next closed at once: a second connection is reset, not served.
        const good = join(dir, 'server.yaml');
        writeFileSync(good, 'limits:\n  connectionsPerAddress: 1\n  overCapCloseDelayMs: 0\n');
        const s = await startChild(
          process.execPath,
          [
            CLI,
            '--json',
            'server',
            '--data',
            join(dir, 'data'),
            '--listen',
            '127.0.0.1:0',
            '--config',
            good,
            '--log-level',
            'warn',
          ],
          (out) => (out.trimEnd().endsWith('}') ? out : undefined),
          { env, what: 'edgeguard server' },
        );
        try {
          const url = new URL((JSON.parse(s.value) as { url: string }).url);
          const outcome = () =>
            new Promise<string>((resolve) => {
              const socket = connect({ host: url.hostname, port: Number(url.port), rejectUnauthorized: false });
              socket.once('secureConnect', () => resolve('handshake completed'));
              socket.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
              sockets.push(socket);
            });
          const sockets: ReturnType<typeof connect>[] = [];
          assert.equal(await outcome(), 'handshake completed');
          assert.equal(await outcome(), 'ECONNRESET');
          for (const socket of sockets) socket.destroy();
        } finally {
          s.child.kill('SIGKILL');
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});
