/**
 * Runs inside the test's "server" network namespace: HTTPS servers on the given ports and a tiny DNS
 * responder (RFC 1035 section 4.1) on UDP 53 of each resolver address that answers every A query
 * with one address. Prints "ready" once everything listens; exits when its stdin closes (the test
 * ended or died). A resolver's socket is bound to its own address because the client only takes
 * answers from the address it asked.
 *
 *   node --import tsx netns-peer.ts '{"answer", "resolvers": [...], "ports": [...], "key": FILE, "cert": FILE}'
 */
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';

interface PeerConfig {
  /** The address every DNS answer carries. */
  answer: string;
  resolvers: string[];
  ports: number[];
  /** TLS key and certificate chain (PEM files). */
  key: string;
  cert: string;
}

const config = JSON.parse(process.argv[2]!) as PeerConfig;
const DNS_HEADER_BYTES = 12;

/** The question section's end: labels up to the zero length, then QTYPE and QCLASS. */
function questionEnd(query: Buffer): number | undefined {
  let offset = DNS_HEADER_BYTES;
  while (offset < query.length && query[offset] !== 0) offset += query[offset]! + 1;
  return offset + 5 <= query.length ? offset + 5 : undefined;
}

function answerQuery(query: Buffer): Buffer | undefined {
  const end = query.length >= DNS_HEADER_BYTES && query.readUInt16BE(4) === 1 ? questionEnd(query) : undefined;
  if (end === undefined) return undefined;
  const header = Buffer.alloc(DNS_HEADER_BYTES);
  query.copy(header, 0, 0, 2); // ID
  header.writeUInt16BE(0x8180, 2); // QR, RD, RA, NOERROR
  header.writeUInt16BE(1, 4); // QDCOUNT
  header.writeUInt16BE(1, 6); // ANCOUNT
  const record = Buffer.alloc(16);
  record.writeUInt16BE(0xc00c, 0); // name: pointer to the question's
  record.writeUInt16BE(1, 2); // TYPE A
  record.writeUInt16BE(1, 4); // CLASS IN
  record.writeUInt32BE(60, 6); // TTL
  record.writeUInt16BE(4, 10); // RDLENGTH
  Buffer.from(config.answer.split('.').map(Number)).copy(record, 12);
  return Buffer.concat([header, query.subarray(DNS_HEADER_BYTES, end), record]);
}

async function main(): Promise<void> {
  const sockets = config.resolvers.map((address) => {
    const socket = createSocket('udp4');
    socket.on('message', (query, peer) => {
      const reply = answerQuery(query);
      if (reply) socket.send(reply, peer.port, peer.address);
    });
    return socket.bind(53, address);
  });
  await Promise.all(sockets.map((s) => once(s, 'listening')));
  const tls = { key: readFileSync(config.key), cert: readFileSync(config.cert) };
  const servers = config.ports.map((port) =>
    createServer(tls, (_req, res) => res.end(`edgeguard test peer on ${port}\n`)).listen(port, '0.0.0.0'),
  );
  await Promise.all(servers.map((s) => once(s, 'listening')));
  process.stdout.write('ready\n');
  process.stdin.resume();
  await once(process.stdin, 'end');
  for (const s of sockets) s.close();
  for (const s of servers) s.close().closeAllConnections();
}

await main();
