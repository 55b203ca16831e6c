// A hostile member for tests: a PortClient (the library, in this process) that
// joins with a real key, talks to one peer until their pair session is up, and
// on SIGUSR2 seals 100 frames from a source MAC the switch never placed behind
// it, end to end, by turning off its own-source check. Run inside a test
// namespace; it exits after 60 s whatever happens.
//
//   node forging-port.js <switchHost> <switchPort> <keyFile> <switchPub> <ip/cidr> <peerIp> <peerMac>
//
// Prints "forging port ready", then "forged N frames end to end" after SIGUSR2.
import { execFile } from 'node:child_process';
import { PortClient, readKeyFile, buffersToBatch, parseMac, macToBuffer } from '../../lib/index.js';

const [host, port, keyFile, switchPub, cidr, peerIp, peerMac] = process.argv.slice(2);
const FORGED = 100;
/** A unicast MAC no member has used: the switch places it behind nobody. */
const FOREIGN_SOURCE = '02:00:00:00:0f:0f';
const ETHERTYPE_LOCAL_EXPERIMENTAL = 0x88b5;

setTimeout(() => process.exit(3), 60_000).unref();

const client = await PortClient.start({
  host: host!,
  port: Number(port),
  privateKey: readKeyFile(keyFile!).privateKey,
  switchPublicKey: switchPub!,
  name: 'h1',
  tap: { name: 'etl0', addresses: [cidr!] },
});
await new Promise<void>((resolve) => client.once('joined', () => resolve()));
const pairs = (client as unknown as { pairs: { checkOwnSource: boolean } }).pairs;

// Real traffic first: the switch introduces us to the peer and the pair session comes up.
for (let i = 0; i < 50; i++) {
  await new Promise<void>((resolve) => execFile('ping', ['-c', '1', '-W', '1', peerIp!], () => resolve()));
  if (client.status().peers.some((p) => p.state === 'up' && p.txFrames > 0)) break;
}
if (!client.status().peers.some((p) => p.state === 'up')) {
  process.stderr.write(`no pair session came up: ${JSON.stringify(client.status().peers)}\n`);
  process.exit(2);
}
process.stdout.write('forging port ready\n');

process.on('SIGUSR2', () => {
  pairs.checkOwnSource = false;
  const frames: Buffer[] = [];
  for (let i = 0; i < FORGED; i++) {
    const f = Buffer.alloc(100);
    macToBuffer(parseMac(peerMac!), f, 0);
    macToBuffer(parseMac(FOREIGN_SOURCE), f, 6);
    f.writeUInt16BE(ETHERTYPE_LOCAL_EXPERIMENTAL, 12);
    f.writeUInt32BE(i, 14);
    frames.push(f);
  }
  const before = client.status().pairs.txPair;
  client.send(buffersToBatch(frames));
  pairs.checkOwnSource = true;
  process.stdout.write(`forged ${client.status().pairs.txPair - before} frames end to end\n`);
});
process.on('SIGTERM', () => {
  client.close();
  process.exit(0);
});
