/**
 * An active interposer on the TPM bus, for tests: a TCP proxy between tpm2-tools (the swtpm TCTI)
 * and a test swtpm. The swtpm TCTI sends raw TPM 2.0 command bytes on the data port and takes raw
 * response bytes back; it reaches the control channel on data port + 1, which is forwarded as is.
 * When armed, the proxy rewrites the data of every TPM2_NV_Read response it forwards, and then its
 * response HMAC as anyone can for a session without a session key (unsalted, unbound) and an empty
 * authValue, which is what tpm2-tools uses for a plain "password" authorization (Part 1, 19.6
 * "HMAC computation": key = sessionKey || authValue, both empty):
 *
 *   command   tag u16 | size u32 | commandCode u32 | authHandle u32 | nvIndex u32
 *             | authorizationSize u32 | sessionHandle u32, nonceCaller TPM2B, attributes u8, hmac TPM2B | size u16, offset u16
 *   response  tag u16 | size u32 | responseCode u32 | parameterSize u32 | TPM2B_MAX_NV_BUFFER (size u16, data)
 *             | nonceTPM TPM2B, attributes u8, hmac TPM2B
 *
 * rpHash = SHA-256(responseCode || commandCode || parameters); hmac = HMAC-SHA-256(key, rpHash ||
 * nonceTPM || nonceCaller || attributes). A salted session's key is unknown to the proxy, so its
 * recomputed HMAC is wrong and ESAPI refuses the response.
 */
import { createHash, createHmac } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { freePortPair, type Swtpm } from '../../src/tpm/swtpm.ts';

export const TPM_CC_NV_READ = 0x0000014e;
export const TPM_CC_NV_INCREMENT = 0x00000134;
/** TPM_RS_PW: a password session, whose response carries no HMAC. */
const TPM_RS_PW = 0x40000009;
const TPM_ST_SESSIONS = 0x8002;
const HEADER = 10;

export interface TpmInterposer {
  /** The TCTI that goes through the proxy. */
  tcti: string;
  /** Alters the data of NV_Read responses in place while set (the proxy re-signs those it changed); undefined forwards everything as is. */
  forge: ((data: Buffer) => void) | undefined;
  /** NV_Read responses altered and re-signed so far. */
  forged: number;
  /** While set, TPM2_NV_Increment is not forwarded: the proxy answers success itself, signed as for `forge`. */
  swallowIncrements: boolean;
  /** NV_Increment commands answered in the TPM's place so far. */
  swallowed: number;
  close(): Promise<void>;
}

/** Split a byte stream into TPM command or response frames (the size field at offset 2). */
function framer(onFrame: (frame: Buffer) => void): (chunk: Buffer) => void {
  let buf = Buffer.alloc(0);
  return (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= HEADER) {
      const size = buf.readUInt32BE(2);
      if (size < HEADER || buf.length < size) break;
      onFrame(buf.subarray(0, size));
      buf = buf.subarray(size);
    }
  };
}

function listen(port: number, onSocket: (s: Socket) => void): Promise<Server> {
  return new Promise((res, rej) => {
    const srv = createServer(onSocket);
    srv.once('error', rej);
    srv.listen(port, '127.0.0.1', () => res(srv));
  });
}

function pipeBoth(a: Socket, b: Socket): void {
  a.pipe(b);
  b.pipe(a);
  a.on('error', () => b.destroy());
  b.on('error', () => a.destroy());
  a.on('close', () => b.destroy());
  b.on('close', () => a.destroy());
}

export async function startTpmInterposer(tpm: Swtpm): Promise<TpmInterposer> {
  const port = await freePortPair();
  const sockets = new Set<Socket>();
  const track = (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    return s;
  };
  const proxy: TpmInterposer = {
    tcti: `swtpm:host=127.0.0.1,port=${port}`,
    forge: undefined,
    forged: 0,
    swallowIncrements: false,
    swallowed: 0,
    close: async () => {
      for (const s of sockets) s.destroy();
      await Promise.all(servers.map((srv) => new Promise((r) => srv.close(r))));
    },
  };
  const alter = (command: Buffer, response: Buffer): void => {
    if (!proxy.forge || response.readUInt32BE(6) !== 0 || response.readUInt16BE(0) !== TPM_ST_SESSIONS) return;
    const paramSize = response.readUInt32BE(HEADER);
    const params = response.subarray(HEADER + 4, HEADER + 4 + paramSize);
    const data = params.subarray(2, 2 + params.readUInt16BE(0));
    const was = Buffer.from(data);
    proxy.forge(data);
    if (data.equals(was)) return; // not this read: forwarded as the TPM sent it
    // The command's first session: after the two handles and authorizationSize, its handle, then nonceCaller.
    const callerAt = HEADER + 8 + 4 + 4;
    const nonceCaller = command.subarray(callerAt + 2, callerAt + 2 + command.readUInt16BE(callerAt));
    const auth = HEADER + 4 + paramSize;
    const nonceTpm = response.subarray(auth + 2, auth + 2 + response.readUInt16BE(auth));
    const attributes = response.subarray(auth + 2 + nonceTpm.length, auth + 3 + nonceTpm.length);
    const hmacAt = auth + 3 + nonceTpm.length;
    const rpHash = createHash('sha256')
      .update(Buffer.from([0, 0, 0, 0]))
      .update(command.subarray(6, 10))
      .update(params)
      .digest();
    createHmac('sha256', Buffer.alloc(0))
      .update(Buffer.concat([rpHash, nonceTpm, nonceCaller, attributes]))
      .digest()
      .copy(response, hmacAt + 2);
    proxy.forged++;
  };
  /**
   * A success answer to an NV_Increment the TPM never saw: no parameters, the command's session
   * echoed with a made-up nonceTPM and an HMAC made with the empty key (none for a password session).
   */
  const fakeIncrement = (command: Buffer): Buffer => {
    const callerAt = HEADER + 8 + 4 + 4;
    const handle = command.readUInt32BE(callerAt - 4);
    const nonceCaller = command.subarray(callerAt + 2, callerAt + 2 + command.readUInt16BE(callerAt));
    const attributes = command.subarray(callerAt + 2 + nonceCaller.length, callerAt + 3 + nonceCaller.length);
    const nonceTpm = handle === TPM_RS_PW ? Buffer.alloc(0) : createHash('sha256').update(command).digest();
    const rpHash = createHash('sha256')
      .update(Buffer.from([0, 0, 0, 0]))
      .update(command.subarray(6, 10))
      .digest();
    const hmac =
      handle === TPM_RS_PW
        ? Buffer.alloc(0)
        : createHmac('sha256', Buffer.alloc(0))
            .update(Buffer.concat([rpHash, nonceTpm, nonceCaller, attributes]))
            .digest();
    const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
    const auth = Buffer.concat([u16(nonceTpm.length), nonceTpm, attributes, u16(hmac.length), hmac]);
    const out = Buffer.alloc(HEADER + 4);
    out.writeUInt16BE(TPM_ST_SESSIONS, 0);
    out.writeUInt32BE(0, 6);
    out.writeUInt32BE(0, HEADER);
    const frame = Buffer.concat([out, auth]);
    frame.writeUInt32BE(frame.length, 2);
    return frame;
  };
  const data = await listen(port, (client) => {
    const tpmSide = track(connect({ host: '127.0.0.1', port: tpm.port }));
    track(client);
    const commands: Buffer[] = [];
    client.on(
      'data',
      framer((cmd) => {
        if (proxy.swallowIncrements && cmd.readUInt32BE(6) === TPM_CC_NV_INCREMENT) {
          proxy.swallowed++;
          client.write(fakeIncrement(cmd));
          return;
        }
        commands.push(Buffer.from(cmd));
        tpmSide.write(cmd);
      }),
    );
    tpmSide.on(
      'data',
      framer((rsp) => {
        const out = Buffer.from(rsp);
        const cmd = commands.shift();
        if (cmd && cmd.readUInt32BE(6) === TPM_CC_NV_READ) alter(cmd, out);
        client.write(out);
      }),
    );
    const end = () => {
      client.destroy();
      tpmSide.destroy();
    };
    for (const s of [client, tpmSide]) {
      s.on('error', end);
      s.on('close', end);
    }
  });
  const ctrl = await listen(port + 1, (client) => {
    pipeBoth(track(client), track(connect({ host: '127.0.0.1', port: tpm.ctrlPort })));
  });
  const servers = [data, ctrl];
  return proxy;
}
