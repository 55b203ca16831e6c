// A switch embedded in your own Node app: a UDP listener that vports join, a
// local TAP so this host is on the LAN too, the allow file reloaded on SIGHUP
// and the ports printed on SIGUSR1.
//   node dist/examples/embedded-switch.js [KEYFILE] [ALLOWFILE] [UDPPORT]   (as root: the TAP needs CAP_NET_ADMIN)
import { SwitchServer, TapDevice, createLogger, readAllowFile, readKeyFile, switchStatusReport } from 'etherlink';

const [keyFile = 'switch.key', allowFile = 'allow', udpPort = '9999'] = process.argv.slice(2);
const log = createLogger({ name: 'app' });
const server = new SwitchServer({
  listen: [{ address: '::', port: Number(udpPort) }],
  privateKey: readKeyFile(keyFile).privateKey,
  allow: readAllowFile(allowFile),
  logger: log,
});
const tap = TapDevice.open({ name: 'etl-sw', addresses: ['10.99.0.254/24'] });
server.addLocalPort(tap, 'local');
console.log(`switch ${server.publicKey} on UDP ${server.ports.join(',')}, local port ${tap.name}`);

process.on('SIGHUP', () => {
  const removed = server.setAllowList(readAllowFile(allowFile));
  console.log(`allow file reloaded; disconnected: ${removed.join(', ') || 'none'}`);
});
process.on('SIGUSR1', () => {
  for (const p of switchStatusReport(server).ports) console.log(`port ${p.id} ${p.name} ${p.address}: ${p.counters.rxFrames} frames in, MACs ${p.macs.map((m) => m.mac).join(' ') || '-'}`);
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    server.close();
    tap.close();
    console.log('switch closed');
  });
}
