// A port embedded in your own Node app: join a switch and watch the traffic.
// Run as root: node dist/examples/embedded-port.js SWITCH_HOST
import { PortClient, readEtherType } from 'etherlink';

const client = await PortClient.start({ host: process.argv[2] ?? '127.0.0.1', port: 9999, tap: { name: 'etl0', addresses: ['10.99.0.10/24'] } });
client.on('joined', (s) => console.log(`joined ${s.switch}`));
client.tap.on('frames', (batch) => {
  for (let i = 0; i < batch.count; i++) console.log('ethertype', readEtherType(batch.buf, batch.offsets[i]!, batch.lengths[i]!).toString(16));
});
process.once('SIGINT', () => client.close());
