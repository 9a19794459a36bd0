/**
 * Demo step of the device key store: bind the content key to this device. With swtpm installed it
 * manufactures a software TPM, creates the PCR-bound binding key, wraps the content key to it,
 * loads and runs the model through the TPM unwrap, then shows the clone attack and a changed boot
 * state being refused. Without swtpm it uses the software provider and says so.
 */
import { readdir, readFile, writeFile, cp } from 'node:fs/promises';
import { join } from 'node:path';
import { readContentKeyFile, readPublicSigningKey, wipe } from '../../crypto/index.ts';
import { isEdgeguardError } from '../../errors/index.ts';
import { loadProtectedModel } from '../../inference/index.ts';
import {
  encodeWrappedKeyFile,
  initDevice,
  openDeviceKeyStore,
  parseBindingPublicKey,
  wrapContentKey,
} from '../../keystore/index.ts';
import { TpmClient, missingSwtpmBinaries, startSwtpm, type Swtpm } from '../../tpm/index.ts';
import type { DemoContext, DemoStep } from './context.ts';

/** The EG_ code a promise is refused with (an unexpected success or a foreign error is thrown). */
export async function refusedCode(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (isEdgeguardError(e)) return e.code;
    throw e;
  }
  throw new Error('the unwrap was not refused');
}

async function runThroughDevice(ctx: DemoContext, dir: string, wrappedText: string): Promise<string | undefined> {
  const store = await openDeviceKeyStore(dir);
  const key = await store.unwrapContentKey(wrappedText);
  let model;
  try {
    model = await loadProtectedModel(ctx.state.packagePath!, {
      publicKeys: [await readPublicSigningKey(ctx.state.publisherPubPath!)],
      contentKey: key,
    });
  } finally {
    wipe(key.bytes);
  }
  try {
    const digits = (await readdir(join(ctx.fixtures, 'digits')).catch(() => [] as string[]))
      .filter((f) => f.endsWith('.png'))
      .sort();
    const f = digits.find((d) => d.startsWith('7-')) ?? digits[0];
    if (!f) return undefined;
    const c = await model.classifyImage(await readFile(join(ctx.fixtures, 'digits', f)));
    ctx.say(`key: ${store.posture.label}; ${f}: predicted ${c.label} (confidence ${c.confidence.toFixed(3)})`);
    return c.label;
  } finally {
    await model.release();
  }
}

export const deviceStep: DemoStep = {
  id: 'device',
  title: 'Bind the content key to this device (TPM 2.0 under a PCR policy; software key store without a TPM)',
  async run(ctx) {
    const missing = missingSwtpmBinaries();
    const dir = ctx.path('device');
    const wrappedPath = ctx.path('model.key.wrapped');
    const wrap = async () => {
      const contentKey = await readContentKeyFile(ctx.state.contentKeyPath!);
      try {
        const text = encodeWrappedKeyFile(
          wrapContentKey(contentKey, parseBindingPublicKey(await readFile(join(dir, 'binding.pub'), 'utf8'))),
        );
        await writeFile(wrappedPath, text);
        ctx.command(`key wrap model.key --to ${join(dir, 'binding.pub')} -o ${wrappedPath}`);
        return text;
      } finally {
        wipe(contentKey.bytes);
      }
    };
    const runLine = `run ${ctx.state.packagePath} --wrapped-key ${wrappedPath} --device ${dir} --pub publisher.pub --input fixtures/digits/<digit>.png`;

    if (missing.length) {
      ctx.say(
        `swtpm is not installed (missing ${missing.join(', ')}): using the SOFTWARE key store, which is not hardware-bound.`,
      );
      await initDevice({ dir });
      ctx.command(`device init --dir ${dir} --software`);
      const text = await wrap();
      ctx.command(runLine);
      const label = await runThroughDevice(ctx, dir, text);
      ctx.say(
        'software key: not hardware-bound; a copy of the device directory can unwrap this key. Install swtpm (or use a real TPM) to see the binding.',
      );
      return { provider: 'software', hardwareBound: false, label };
    }

    let tpm: Swtpm | undefined;
    let other: Swtpm | undefined;
    try {
      tpm = await startSwtpm();
      ctx.say(`started swtpm (manufactured with an EK certificate from a local CA) at ${tpm.tcti}`);
      const r = await initDevice({ dir, tcti: tpm.tcti });
      ctx.command(`device init --dir ${dir} --tpm ${tpm.tcti} --pcrs ${r.device.tpm!.pcrs}`);
      ctx.say(
        `binding key ${r.device.tpm!.bindingName.slice(0, 20)}… (RSA-2048, fixedTPM|fixedParent), policy PolicyPCR ${r.device.tpm!.pcrs}; TPM2_Certify evidence written`,
      );
      const text = await wrap();
      ctx.command(runLine);
      const label = await runThroughDevice(ctx, dir, text);

      // The clone attack: the whole directory copied to a device with another TPM.
      other = await startSwtpm({ ca: tpm.ca });
      const clone = ctx.path('device-clone');
      await cp(dir, clone, { recursive: true });
      const cloneCode = await refusedCode(
        (await openDeviceKeyStore(clone, { tcti: other.tcti })).unwrapContentKey(text),
      );
      ctx.say(`clone attack (copy of ${dir} on another TPM): refused with ${cloneCode}`);

      // A changed boot chain: extend PCR 7 (Secure Boot policy) and try again.
      await new TpmClient({ tcti: tpm.tcti }).extendPcr(7, 'sha256', Buffer.alloc(32, 0xee));
      ctx.say(`$ tpm2_pcrextend 7:sha256=eeee…  (the boot state changes)`);
      const policyCode = await refusedCode((await openDeviceKeyStore(dir)).unwrapContentKey(text));
      ctx.say(`after the PCR change: refused with ${policyCode}; nothing was decrypted`);
      return { provider: 'tpm', hardwareBound: true, label, cloneRefused: cloneCode, pcrChangeRefused: policyCode };
    } finally {
      await other?.remove();
      await tpm?.remove();
    }
  },
};
