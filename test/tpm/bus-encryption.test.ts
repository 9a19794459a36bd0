/**
 * What a TPM bus sniffer sees: swtpm logs every command and response it exchanges (level 20), and
 * the unwrapped content key and unsealed data must not appear in them, because the client's policy
 * sessions are salted and encrypt their first parameters. The control (an unencrypted policy
 * session driven with tpm2-tools directly) shows the same search does find the key otherwise.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { constants, publicEncrypt, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TpmClient, formatPcrSelection, tpmPublicKey, type BindingKey } from '../../src/tpm/index.ts';
import { TPM_SKIP, startTestTpm, stopTestTpm, type Swtpm } from '../helpers/swtpm.ts';

/** Every SWTPM_IO_Read / SWTPM_IO_Write block of the log, as bytes. */
function busTraffic(logPath: string): Buffer[] {
  const blocks: Buffer[] = [];
  let cur: number[] | undefined;
  for (const line of readFileSync(logPath, 'utf8').split('\n')) {
    if (/SWTPM_IO_(Read|Write): length/.test(line)) {
      if (cur) blocks.push(Buffer.from(cur));
      cur = [];
    } else if (cur && /^\s*([0-9A-F]{2}\s+)*[0-9A-F]{2}\s*$/.test(line)) {
      cur.push(
        ...line
          .trim()
          .split(/\s+/)
          .map((x) => parseInt(x, 16)),
      );
    } else if (cur) {
      blocks.push(Buffer.from(cur));
      cur = undefined;
    }
  }
  if (cur) blocks.push(Buffer.from(cur));
  return blocks;
}

const seen = (logPath: string, needle: Buffer) => busTraffic(logPath).some((b) => b.includes(needle));

describe('TPM bus encryption (swtpm I/O log)', { skip: TPM_SKIP }, () => {
  let tpm: Swtpm | undefined;
  let client: TpmClient;
  let binding: BindingKey;
  const work = mkdtempSync(join(tmpdir(), 'eg-tpm-bus-'));
  const log = join(work, 'io.log');

  before(async () => {
    tpm = await startTestTpm({ ioLogPath: log });
    client = new TpmClient({ tcti: tpm.tcti });
    binding = await client.createBindingKey('sha256:0,7');
  });
  after(async () => {
    await stopTestTpm(tpm);
    rmSync(work, { recursive: true, force: true });
  });

  test('the unwrapped key never crosses the bus in the clear', async () => {
    const secret = randomBytes(32);
    const ct = publicEncrypt(
      { key: tpmPublicKey(binding.publicArea), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
      secret,
    );
    assert.deepEqual(await client.rsaDecrypt(binding, binding.pcrs, ct), secret);
    assert.ok(busTraffic(log).length > 20, 'the swtpm log holds the traffic');
    assert.ok(!seen(log, secret.subarray(0, 16)), 'plaintext key seen on the bus');
    assert.ok(!seen(log, ct.subarray(0, 32)), 'the wrapped key is sent encrypted too');
  });

  test('unsealed data never crosses the bus in the clear', async () => {
    const secret = randomBytes(48);
    const sealed = await client.seal(secret, 'sha256:0,7');
    writeFileSync(log, '');
    assert.deepEqual(await client.unseal(sealed, sealed.pcrs), secret);
    assert.ok(!seen(log, secret.subarray(0, 16)));
  });

  test('control: without session encryption the same search finds the key', () => {
    const secret = randomBytes(32);
    const ct = publicEncrypt(
      { key: tpmPublicKey(binding.publicArea), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
      secret,
    );
    writeFileSync(join(work, 'b.pub'), binding.public);
    writeFileSync(join(work, 'b.priv'), binding.private);
    writeFileSync(join(work, 'ct.bin'), ct);
    const env = { ...process.env, TPM2TOOLS_TCTI: tpm!.tcti };
    const run = (args: string[]) =>
      execFileSync(args[0]!, args.slice(1), { cwd: work, env, stdio: ['ignore', 'pipe', 'pipe'] });
    run(['tpm2_createprimary', '-Q', '-C', 'o', '-g', 'sha256', '-G', 'rsa2048:null:aes128cfb', '-c', 'srk.ctx']);
    run(['tpm2_flushcontext', '-t']);
    run(['tpm2_load', '-Q', '-C', 'srk.ctx', '-u', 'b.pub', '-r', 'b.priv', '-c', 'b.ctx']);
    run(['tpm2_flushcontext', '-t']);
    run(['tpm2_startauthsession', '-Q', '--policy-session', '-S', 's.ctx']);
    run(['tpm2_policypcr', '-Q', '-S', 's.ctx', '-l', formatPcrSelection(binding.pcrs)]);
    const out = run(['tpm2_rsadecrypt', '-c', 'b.ctx', '-p', 'session:s.ctx', '-s', 'oaep', 'ct.bin']);
    run(['tpm2_flushcontext', '-t']);
    run(['tpm2_flushcontext', '-s']);
    assert.deepEqual(out, secret);
    assert.ok(seen(log, secret.subarray(0, 16)), 'an unencrypted session leaks the key to a bus sniffer');
  });
});
