// Child process of the link-monitor tests: opens a TAP in the namespace it runs in,
// follows its link and prints one JSON line per fact; the test drives `ip link`.
// Usage: link-probe NAME [--drop-capabilities]. Closes the TAP and exits when stdin ends.
import { readFileSync } from 'node:fs';
import { TapDevice, linkStateFromFlags } from '../../lib/io/tap.js';
import { native } from '../../lib/io/native.js';

const name = process.argv[2]!;
const say = (fact: object): void => void process.stdout.write(`${JSON.stringify(fact)}\n`);
const capEff = (): string => /^CapEff:\s*(\w+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '?';

const tap = TapDevice.open({ name });
say({ queried: tap.link, linkUp: tap.linkUp });
tap.on('link', (state) => say({ event: state, linkUp: tap.linkUp, fresh: linkStateFromFlags(native().getFlags(name)) }));
if (process.argv.includes('--drop-capabilities')) {
  native().dropCapabilities();
  say({ capEff: capEff() });
}
say({ ready: true });
process.stdin.resume();
process.stdin.on('end', () => {
  tap.close();
  say({ closed: tap.link });
});
