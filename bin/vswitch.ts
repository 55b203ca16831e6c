#!/usr/bin/env node
// vswitch: the virtual Ethernet switch. A UDP server that learns MAC addresses
// and forwards frames between its ports. Thin: parses flags, wires signals, calls lib.
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { SwitchServer, DEFAULT_SWITCH_PORT, type ListenAddress, type SwitchServerOptions } from '../lib/switch-server.js';
import { SecureSwitchEngine } from '../lib/secure/switch-engine.js';
import { KEYGEN_HINT, loadAllowList, loadPrivateKey, loadPsk } from '../lib/identity.js';
import { encodeKey, publicKeyOf } from '../lib/crypto/keys.js';
import { createLogger, LOG_LEVELS, type LogLevel, type LogFormat } from '../lib/log.js';
import { cliFail, fatal, parseListen, parsePortNumber, parsePositive } from '../lib/cli.js';
import { formatSwitchStatus } from '../lib/status.js';

const argv = await yargs(hideBin(process.argv))
  .scriptName('vswitch')
  .usage('$0 [PORT]\n\nRun a virtual Ethernet switch: vports that join it over UDP share one LAN.')
  .command('$0 [port]', false)
  .positional('port', { type: 'string', describe: `UDP port to listen on, all addresses, IPv4 and IPv6 (default ${DEFAULT_SWITCH_PORT})` })
  .option('key', { type: 'string', describe: "this switch's private key file (etherlink keygen)" })
  .option('allow', { type: 'string', describe: 'file of admitted port public keys, one per line with an optional name; SIGHUP reloads it' })
  .option('psk', { type: 'string', describe: 'pre-shared key file mixed into every handshake (etherlink genpsk); ports need the same' })
  .option('insecure', { type: 'boolean', default: false, describe: 'plaintext protocol 1: no keys, anyone who reaches the port can join and read traffic' })
  .option('rekey-after', { type: 'number', hidden: true, describe: 'seconds before session keys expire (tests)' })
  .option('listen', { type: 'string', array: true, describe: 'ADDR:PORT to listen on (repeatable; overrides PORT)' })
  .option('mac-age', { type: 'number', default: 300, describe: 'seconds before an idle learned MAC is forgotten' })
  .option('max-macs', { type: 'number', default: 65536, describe: 'learned MACs in total' })
  .option('max-macs-per-port', { type: 'number', default: 64, describe: 'learned MACs per port (a flood fills only its own quota)' })
  .option('mac-move-hold', { type: 'number', default: 10, describe: 'seconds an active port keeps its MAC before another port may take it' })
  .option('port-timeout', { type: 'number', default: 30, describe: 'seconds without keepalives before a port is dropped' })
  .option('max-ports', { type: 'number', default: 1024, describe: 'ports that may join' })
  .option('log-level', { choices: LOG_LEVELS, default: 'info' as LogLevel, describe: 'error, warn, info or debug' })
  .option('log-format', { choices: ['text', 'json'] as const, default: 'text' as LogFormat, describe: 'human lines or JSON lines' })
  .example('$0 --key /etc/etherlink/switch.key --allow /etc/etherlink/allow', `listen on UDP ${DEFAULT_SWITCH_PORT}, IPv4 and IPv6, admit the listed keys`)
  .example('$0 --insecure', 'plaintext, for a trusted lab only')
  .example('$0 4789 --port-timeout 60', 'another port, keep silent ports for a minute')
  .example('$0 --listen 192.0.2.1:9999 --listen [2001:db8::1]:9999', 'listen on two addresses')
  .epilogue('Signals: SIGINT/SIGTERM tell every port goodbye and exit; SIGHUP reloads the allow file (removed keys are disconnected); SIGUSR1 prints the ports, MAC table and counters.')
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

let security: SwitchServerOptions['security'];
if (argv.insecure) {
  log.warn('INSECURE: plaintext protocol 1 — anyone who can reach this port can join the LAN and read its traffic');
} else {
  if (argv.key === undefined) cliFail(`no --key: a switch needs a private key; ${KEYGEN_HINT}`, undefined);
  if (argv.allow === undefined) cliFail("no --allow: list the public keys of the ports to admit in a file ('etherlink pubkey KEYFILE' on each port) and pass --allow FILE", undefined);
  try {
    const key = loadPrivateKey(argv.key!);
    const psk = loadPsk(argv.psk);
    for (const w of [...key.warnings, ...psk.warnings]) log.warn(w);
    const allow = loadAllowList(argv.allow!);
    security = {
      privateKey: key.value,
      allow,
      ...(psk.value ? { psk: psk.value } : {}),
      ...(argv['rekey-after'] !== undefined ? { rejectAfterMs: argv['rekey-after'] * 1500 } : {}),
    };
    log.info('switch identity', { publicKey: encodeKey(publicKeyOf(key.value)), admitted: allow.length, psk: psk.value ? 'yes' : 'no' });
  } catch (err) {
    fatal('vswitch', err);
  }
}

let server: SwitchServer;
try {
  server = new SwitchServer({
    listen,
    ...(argv.insecure ? { insecure: true } : { security }),
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

process.on('SIGHUP', () => {
  if (!(server.engine instanceof SecureSwitchEngine) || argv.allow === undefined) {
    log.info('SIGHUP: nothing to reload (no allow file in --insecure mode)');
    return;
  }
  try {
    const allow = loadAllowList(argv.allow);
    const removed = server.engine.setAllowList(allow);
    log.info('SIGHUP: allow file reloaded', { admitted: allow.length, disconnected: removed.join(',') || 'none' });
  } catch (err) {
    log.error(`SIGHUP: allow file not reloaded, keeping the old one: ${(err as Error).message}`);
  }
});
process.on('SIGUSR1', () => process.stdout.write(formatSwitchStatus(server.snapshot()) + '\n'));
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    log.info(`${sig}: telling ports goodbye`, { ports: server.engine.size });
    server.close();
    // Let the LEAVE datagrams leave the socket queue.
    setImmediate(() => process.exit(0));
  });
}
