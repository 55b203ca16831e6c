// A port embedded in your own Node app: join a switch with a TAP on this host,
// count the frames that arrive by EtherType, and print the tally on exit.
//   node dist/examples/embedded-port.js SWITCH_HOST [KEYFILE] [SWITCH_PUBLIC_KEY_FILE]   (as root)
import { readFileSync } from 'node:fs';
import { PortClient, readEtherType, readKeyFile } from 'etherlink';

const [host = 'localhost', keyFile = 'port.key', switchKeyFile = 'switch.pub'] = process.argv.slice(2);
const client = await PortClient.start({
  host,
  privateKey: readKeyFile(keyFile).privateKey,
  switchPublicKey: readFileSync(switchKeyFile, 'utf8').trim(),
  tap: { name: 'etl0', addresses: ['10.99.0.10/24'] },
});
const byType = new Map<string, number>();
// The TAP's 'frames' event sees the frames the host sends; the client writes what arrives to it.
client.tap.on('frames', (batch) => {
  for (let i = 0; i < batch.count; i++) {
    const type = readEtherType(batch.buf, batch.offsets[i]!, batch.lengths[i]!).toString(16).padStart(4, '0');
    byType.set(type, (byType.get(type) ?? 0) + 1);
  }
});
client.on('joined', (s) => console.log(`joined ${s.switch} as ${client.publicKey} on ${client.tap.name}`));
client.on('problem', (message) => console.error(message));
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    client.close();
    console.log(`frames sent by this host, by EtherType: ${[...byType].map(([t, n]) => `0x${t} ${n}`).join(', ') || 'none'}`);
  });
}
