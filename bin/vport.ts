#!/usr/bin/env node
// vport: create a TAP device on this host and join it to a vswitch over UDP.
// Thin: parses flags, wires signals, calls lib.
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { PortClient, type PortClientOptions } from '../lib/port-client.js';
import { KEYGEN_HINT, loadPrivateKey, loadPsk, parsePublicKeyFlag } from '../lib/identity.js';
import { encodeKey, publicKeyOf } from '../lib/crypto/keys.js';
import { parseCidr, MIN_MTU, MAX_MTU } from '../lib/tap.js';
import { parseMac, isMulticast } from '../lib/ethernet.js';
import { createLogger, LOG_LEVELS, type LogLevel, type LogFormat } from '../lib/log.js';
import { cliFail, fatal, parsePortNumber, UsageError } from '../lib/cli.js';
import { DEFAULT_TAP_MTU } from '../lib/protocol/constants.js';
import { formatPortStatus } from '../lib/status.js';

const argv = await yargs(hideBin(process.argv))
  .scriptName('vport')
  .usage('$0 HOST PORT\n\nCreate a TAP device and join it to the vswitch at HOST:PORT.')
  .command('$0 <host> <port>', false)
  .positional('host', { type: 'string', demandOption: true, describe: 'switch host name, IPv4 or IPv6 address' })
  .positional('port', { type: 'string', demandOption: true, describe: 'switch UDP port' })
  .option('key', { type: 'string', describe: "this port's private key file (etherlink keygen)" })
  .option('switch-key', { type: 'string', describe: "the switch's public key (etherlink pubkey on the switch): a switch that can't prove it is refused" })
  .option('psk', { type: 'string', describe: 'pre-shared key file, the same as the switch\'s --psk' })
  .option('insecure', { type: 'boolean', default: false, describe: 'plaintext protocol 1 (the switch must run --insecure too)' })
  .option('rekey-after', { type: 'number', hidden: true, describe: 'seconds between rekeys (tests; default 120)' })
  .option('name', { type: 'string', default: 'etl%d', describe: 'interface name, or a pattern with %d' })
  .option('ip', { type: 'string', array: true, describe: 'address in CIDR form (repeatable; IPv4 and IPv6)' })
  .option('mtu', { type: 'number', default: DEFAULT_TAP_MTU, describe: `device MTU (default fits a 1500-byte IPv6 underlay)` })
  .option('mac', { type: 'string', describe: 'device MAC address (default: random)' })
  .option('port-name', { type: 'string', describe: "name the switch shows in its logs (default HOSTNAME/IFNAME)" })
  .option('log-level', { choices: LOG_LEVELS, default: 'info' as LogLevel, describe: 'error, warn, info or debug' })
  .option('log-format', { choices: ['text', 'json'] as const, default: 'text' as LogFormat, describe: 'human lines or JSON lines' })
  .example('$0 switch.example.net 9999 --key port.key --switch-key SWITCHPUB= --name etl0 --ip 10.99.0.2/24', 'join with an IPv4 address')
  .example('$0 2001:db8::1 9999 --key port.key --switch-key SWITCHPUB= --ip 10.99.0.3/24 --ip fd00:99::3/64', 'an IPv6 switch, dual-stack LAN')
  .example('$0 192.0.2.1 9999 --insecure --name etl0 && ip addr add 10.99.0.4/24 dev etl0', 'plaintext lab; no --ip: address it yourself')
  .epilogue('Needs CAP_NET_ADMIN (root, or setcap/AmbientCapabilities). SIGINT/SIGTERM say goodbye to the switch and remove the device; SIGUSR1 prints the session and counters.')
  // '--no-foo' would otherwise be reported as an unknown 'foo'.
  .parserConfiguration({ 'boolean-negation': false, 'camel-case-expansion': false })
  .strict()
  .fail(cliFail)
  .help()
  .version()
  .parseAsync();

const log = createLogger({ level: argv['log-level'], format: argv['log-format'], name: 'vport' });

let port: number;
try {
  port = parsePortNumber(argv.port, 'PORT');
  if (port === 0) throw new UsageError('PORT must be the switch port, 1..65535');
  for (const ip of argv.ip ?? []) {
    try {
      parseCidr(ip);
    } catch (err) {
      throw new UsageError(`--ip ${(err as Error).message}`);
    }
  }
  if (!Number.isInteger(argv.mtu) || argv.mtu < MIN_MTU || argv.mtu > MAX_MTU) {
    throw new UsageError(`--mtu ${argv.mtu} is out of range: use an integer from ${MIN_MTU} to ${MAX_MTU}`);
  }
  if (argv.mac !== undefined) {
    try {
      if (isMulticast(parseMac(argv.mac))) throw new Error(`${argv.mac} is a multicast address: use a unicast one`);
    } catch (err) {
      throw new UsageError(`--mac ${(err as Error).message}`);
    }
  }
} catch (err) {
  cliFail((err as Error).message, undefined);
}

let security: PortClientOptions['security'];
if (argv.insecure) {
  log.warn('INSECURE: plaintext protocol 1 — anyone on the path can read and inject this LAN\'s traffic');
} else {
  if (argv.key === undefined) cliFail(`no --key: a port needs a private key; ${KEYGEN_HINT}`, undefined);
  if (argv['switch-key'] === undefined) cliFail("no --switch-key: give the switch's public key ('etherlink pubkey KEYFILE' on the switch); the port trusts no other switch", undefined);
  let switchKey: Buffer;
  try {
    switchKey = parsePublicKeyFlag(argv['switch-key']!, '--switch-key');
  } catch (err) {
    cliFail((err as Error).message, undefined);
  }
  try {
    const key = loadPrivateKey(argv.key!);
    const psk = loadPsk(argv.psk);
    for (const w of [...key.warnings, ...psk.warnings]) log.warn(w);
    security = {
      privateKey: key.value,
      switchPublicKey: switchKey,
      ...(psk.value ? { psk: psk.value } : {}),
      ...(argv['rekey-after'] !== undefined ? { rekeyAfterMs: argv['rekey-after'] * 1000, rejectAfterMs: argv['rekey-after'] * 1500 } : {}),
    };
    log.info('port identity', { publicKey: encodeKey(publicKeyOf(key.value)), switchKey: argv['switch-key'], psk: psk.value ? 'yes' : 'no' });
  } catch (err) {
    fatal('vport', err);
  }
}

let client: PortClient;
try {
  client = await PortClient.start({
    ...(argv.insecure ? { insecure: true } : { security }),
    host: argv.host,
    port,
    tap: { name: argv.name, mtu: argv.mtu, addresses: argv.ip ?? [], ...(argv.mac !== undefined ? { mac: argv.mac } : {}) },
    logger: log,
    ...(argv['port-name'] !== undefined ? { name: argv['port-name'] } : {}),
  });
} catch (err) {
  const e = err as { code?: string; message: string };
  if (e.code === 'EPERM' || e.code === 'EACCES') {
    fatal('vport', Object.assign(new Error(`${e.message}`), { code: e.code }));
  }
  fatal('vport', err);
}

process.stdout.write(`vport ${client.tap.name} ready, joining ${client.switchAddress}\n`);
client.on('joined', (info) => process.stdout.write(`vport ${client.tap.name} joined ${info.switch}\n`));

process.on('SIGUSR1', () => process.stdout.write(formatPortStatus(client.status()) + '\n'));
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    log.info(`${sig}: leaving the switch and removing ${client.tap.name}`);
    client.close();
    setImmediate(() => process.exit(0));
  });
}
