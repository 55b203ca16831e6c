#!/usr/bin/env node
// vswitch: the virtual Ethernet switch. A UDP server that learns MAC addresses
// and forwards frames between its ports. Thin: parses flags, wires signals, calls lib.
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { SwitchServer, DEFAULT_SWITCH_PORT, type ListenAddress } from '../lib/switch-server.js';
import { createLogger, LOG_LEVELS, type LogLevel, type LogFormat } from '../lib/log.js';
import { cliFail, fatal, parseListen, parsePortNumber, parsePositive } from '../lib/cli.js';
import { formatSwitchStatus } from '../lib/status.js';

const argv = await yargs(hideBin(process.argv))
  .scriptName('vswitch')
  .usage('$0 [PORT]\n\nRun a virtual Ethernet switch: vports that join it over UDP share one LAN.')
  .command('$0 [port]', false)
  .positional('port', { type: 'string', describe: `UDP port to listen on, all addresses, IPv4 and IPv6 (default ${DEFAULT_SWITCH_PORT})` })
  .option('listen', { type: 'string', array: true, describe: 'ADDR:PORT to listen on (repeatable; overrides PORT)' })
  .option('mac-age', { type: 'number', default: 300, describe: 'seconds before an idle learned MAC is forgotten' })
  .option('max-macs', { type: 'number', default: 65536, describe: 'learned MACs in total' })
  .option('max-macs-per-port', { type: 'number', default: 64, describe: 'learned MACs per port (a flood fills only its own quota)' })
  .option('mac-move-hold', { type: 'number', default: 10, describe: 'seconds an active port keeps its MAC before another port may take it' })
  .option('port-timeout', { type: 'number', default: 30, describe: 'seconds without keepalives before a port is dropped' })
  .option('max-ports', { type: 'number', default: 1024, describe: 'ports that may join' })
  .option('log-level', { choices: LOG_LEVELS, default: 'info' as LogLevel, describe: 'error, warn, info or debug' })
  .option('log-format', { choices: ['text', 'json'] as const, default: 'text' as LogFormat, describe: 'human lines or JSON lines' })
  .example('$0', `listen on UDP ${DEFAULT_SWITCH_PORT}, IPv4 and IPv6`)
  .example('$0 4789 --port-timeout 60', 'another port, keep silent ports for a minute')
  .example('$0 --listen 192.0.2.1:9999 --listen [2001:db8::1]:9999', 'listen on two addresses')
  .epilogue('Signals: SIGINT/SIGTERM tell every port goodbye and exit; SIGUSR1 prints the ports, MAC table and counters.')
  // '--no-foo' would otherwise be reported as an unknown 'foo'.
  .parserConfiguration({ 'boolean-negation': false, 'camel-case-expansion': false })
  .strict()
  .fail(cliFail)
  .help()
  .version()
  .parseAsync();

const log = createLogger({ level: argv['log-level'], format: argv['log-format'], name: 'vswitch' });

let listen: ListenAddress[];
try {
  listen = argv.listen?.length ? argv.listen.map(parseListen) : [{ address: '::', port: argv.port !== undefined ? parsePortNumber(argv.port, 'PORT') : DEFAULT_SWITCH_PORT }];
  parsePositive(argv['mac-age'], 'mac-age', { min: 1 });
  parsePositive(argv['max-macs'], 'max-macs');
  parsePositive(argv['max-macs-per-port'], 'max-macs-per-port');
  parsePositive(argv['mac-move-hold'], 'mac-move-hold', { min: 0 });
  parsePositive(argv['port-timeout'], 'port-timeout', { min: 2, max: 65535 });
  parsePositive(argv['max-ports'], 'max-ports');
} catch (err) {
  cliFail((err as Error).message, undefined);
}

let server: SwitchServer;
try {
  server = new SwitchServer({
    listen,
    macAgeS: argv['mac-age'],
    maxMacs: argv['max-macs'],
    maxMacsPerPort: argv['max-macs-per-port'],
    macMoveHoldS: argv['mac-move-hold'],
    portTimeoutS: Math.round(argv['port-timeout']),
    maxPorts: argv['max-ports'],
    logger: log,
  });
} catch (err) {
  const e = err as { code?: string; message: string };
  if (e.code === 'EADDRINUSE') {
    fatal('vswitch', Object.assign(new Error(`UDP ${listen.map((l) => `${l.address}:${l.port}`).join(', ')} is already in use: stop the other switch or choose another port (vswitch PORT)`), { code: e.code }));
  }
  fatal('vswitch', err);
}

log.info('listening', { udp: listen.map((l, i) => `${l.address.includes(':') ? `[${l.address}]` : l.address}:${server.ports[i]}`).join(','), portTimeout: `${argv['port-timeout']}s`, macAge: `${argv['mac-age']}s` });
// Machine-readable readiness line for scripts and tests.
process.stdout.write(`vswitch ready on UDP ${server.ports.join(',')}\n`);

process.on('SIGUSR1', () => process.stdout.write(formatSwitchStatus(server.snapshot()) + '\n'));
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    log.info(`${sig}: telling ports goodbye`, { ports: server.sessions.size });
    server.close();
    // Let the LEAVE datagrams leave the socket queue.
    setImmediate(() => process.exit(0));
  });
}
