// A switch embedded in your own Node app: a local TAP port plus a UDP
// listener that remote vports join. Run as root: node dist/examples/embedded-switch.js
import { SwitchServer, TapDevice, createLogger } from 'etherlink';

const server = new SwitchServer({ listen: [{ address: '::', port: 9999 }], logger: createLogger({ name: 'app' }) });
const tap = TapDevice.open({ name: 'etl-sw', addresses: ['10.99.0.254/24'] });
server.addLocalPort(tap, 'local');

server.on('port-joined', (p) => console.log(`${p.name} joined from ${p.address}`));
process.once('SIGINT', () => {
  server.close();
  tap.close();
});
