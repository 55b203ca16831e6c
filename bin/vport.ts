#!/usr/bin/env node
// vport: create a TAP device on this host and join it to a vswitch over UDP.
// Thin: parses flags, wires signals, calls lib.
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { PortClient, type PortClientOptions } from '../lib/daemon/port-client.js';
import { KEYGEN_HINT, loadPrivateKey, loadPsk, parsePublicKeyFlag } from '../cli/identity.js';
import { encodeKey, publicKeyOf } from '../lib/crypto/keys.js';
import { TRANSPORT_CIPHERS, type TransportCipherName } from '../lib/crypto/constants.js';
import { parseCidr, MIN_MTU, MAX_MTU } from '../lib/io/tap.js';
import { parseMac, isMulticast } from '../lib/core/ethernet.js';
import { createLogger, LOG_LEVELS, type LogLevel, type LogFormat } from '../lib/core/log.js';
import { describeUnapplied, parseWithConfig, reloadConfigFile, PORT_FIELD_RULES, PORT_LIVE_FIELDS } from '../cli/config.js';
import { dropPrivilegesIfHeld } from '../lib/daemon/privilege.js';
import { captureOptionsFromFlags, cliFail, fatal, parseMetricsAddress, parsePortNumber, UsageError } from '../cli/args.js';
import { DEFAULT_TAP_MTU } from '../lib/protocol/constants.js';
import { formatPortStatus, portStatusReport } from '../lib/daemon/status.js';
import { ControlServer, daemonCommands, defaultPortControlPath } from '../lib/daemon/control.js';
import { MetricsServer, metricsListenError, renderPortMetrics } from '../lib/daemon/metrics.js';
import { runStatusCommand } from '../cli/status-command.js';
import { settleWithin, DEFAULT_PCAP_FILES, DEFAULT_PCAP_MAX_BYTES, type PcapOptions } from '../lib/daemon/pcap.js';

// `vport status ...` asks a running vport (and is never read as HOST=status).
if (process.argv[2] === 'status') await runStatusCommand('vport', hideBin(process.argv).slice(1));

const parser = yargs(hideBin(process.argv))
  .scriptName('vport')
  .usage('$0 HOST PORT\n\nCreate a TAP device and join it to the vswitch at HOST:PORT.')
  .command('$0 [host] [port]', false)
  .command('status', 'show the session, switch, RTT and counters of a running vport (vport status --help)')
  .positional('host', { type: 'string', describe: 'switch host name, IPv4 or IPv6 address' })
  .positional('port', { type: 'string', describe: 'switch UDP port' })
  .option('key', { type: 'string', describe: "this port's private key file (etherlink keygen)" })
  .option('switch-key', { type: 'string', describe: "the switch's public key (etherlink pubkey on the switch): a switch that can't prove it is refused" })
  .option('psk', { type: 'string', describe: 'pre-shared key file, the same as the switch\'s --psk' })
  .option('cipher', { choices: TRANSPORT_CIPHERS, default: 'chacha20-poly1305' as TransportCipherName, describe: "transport cipher, the same as the switch's --cipher" })
  .option('insecure', { type: 'boolean', default: false, describe: 'plaintext protocol 1 (the switch must run --insecure too)' })
  .option('rekey-after', { type: 'number', hidden: true, describe: 'seconds between rekeys (tests; default 120)' })
  .option('name', { type: 'string', default: 'etl%d', describe: 'interface name, or a pattern with %d' })
  .option('ip', { type: 'string', array: true, describe: 'address in CIDR form (repeatable; IPv4 and IPv6)' })
  .option('mtu', { type: 'number', default: DEFAULT_TAP_MTU, describe: `device MTU (default fits a 1500-byte IPv6 underlay)` })
  .option('mac', { type: 'string', describe: 'device MAC address (default: random)' })
  .option('port-name', { type: 'string', describe: "name the switch shows in its logs (default HOSTNAME/IFNAME)" })
  .option('pcap', { type: 'string', describe: 'capture the frames on the device, both directions, to FILE: a pcap that tshark and Wireshark read' })
  .option('pcap-max-mb', { type: 'number', default: DEFAULT_PCAP_MAX_BYTES / 1_000_000, describe: 'MB per capture file before it rotates' })
  .option('pcap-files', { type: 'number', default: DEFAULT_PCAP_FILES, describe: 'capture files kept: FILE, FILE.1, ... (oldest deleted); 1 = stop when FILE is full' })
  .option('control', { type: 'string', describe: `control socket for 'vport status' (owner only; default ${defaultPortControlPath('IFNAME')}; 'none': no socket)` })
  .option('metrics', { type: 'string', describe: 'serve Prometheus metrics at http://ADDR:PORT/metrics (off by default)' })
  .option('config', { type: 'string', describe: 'JSON file of flags by their long name (and "host", "port"); flags given here override it; SIGHUP re-reads it' })
  .option('drop-privileges', { type: 'boolean', default: true, describe: 'give up every capability once the device is configured (when it holds any)' })
  .option('log-level', { choices: LOG_LEVELS, default: 'info' as LogLevel, describe: 'error, warn, info or debug' })
  .option('log-format', { choices: ['text', 'json'] as const, default: 'text' as LogFormat, describe: 'human lines or JSON lines' })
  .example('$0 switch.example.net 9999 --key port.key --switch-key SWITCHPUB= --name etl0 --ip 10.99.0.2/24', 'join with an IPv4 address')
  .example('$0 2001:db8::1 9999 --key port.key --switch-key SWITCHPUB= --ip 10.99.0.3/24 --ip fd00:99::3/64', 'an IPv6 switch, dual-stack LAN')
  .example('$0 --config /etc/etherlink/vport.json', 'everything from a file (docs/deploy.md)')
  .example('$0 192.0.2.1 9999 --insecure --name etl0 && ip addr add 10.99.0.4/24 dev etl0', 'plaintext lab; no --ip: address it yourself')
  .epilogue('Needs CAP_NET_ADMIN (root, or setcap/AmbientCapabilities). Once the device is configured it drops every capability (--drop-privileges). SIGINT/SIGTERM say goodbye to the switch and remove the device; SIGHUP re-resolves the switch name and re-reads --config (log-level applies at once; other changes are logged as needing a restart); SIGUSR1 prints the session and counters.')
  // '--no-foo' would otherwise be reported as an unknown 'foo'.
  .parserConfiguration({ 'boolean-negation': false, 'camel-case-expansion': false })
  .strict()
  .fail(cliFail)
  .help()
  .version();
const cfg = await parseWithConfig(parser, hideBin(process.argv), PORT_FIELD_RULES);
const argv = cfg.argv;
if (argv.host === undefined || argv.port === undefined) {
  cliFail(`Not enough non-option arguments: got ${argv.host === undefined ? 0 : 1}, need at least 2 (HOST PORT, or "host" and "port" in --config FILE)`, undefined);
}

const log = createLogger({ level: argv['log-level'], format: argv['log-format'], name: 'vport' });

let port: number;
let metricsAt: { address: string; port: number } | undefined;
let capture: PcapOptions;
try {
  port = parsePortNumber(argv.port, 'PORT');
  if (argv.metrics !== undefined) metricsAt = parseMetricsAddress(argv.metrics);
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
  capture = captureOptionsFromFlags(argv);
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
      cipher: argv.cipher,
    };
    log.info('port identity', { publicKey: encodeKey(publicKeyOf(key.value)), switchKey: argv['switch-key'], psk: psk.value ? 'yes' : 'no', cipher: argv.cipher });
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
  if (e.code === 'EACCES' && (err as { syscall?: string }).syscall === 'open') {
    // The device node's mode, not a capability: /dev/net/tun is 0600 root where no udev set it to 0666.
    fatal('vport', Object.assign(new Error(`${e.message}; if this user holds CAP_NET_ADMIN, /dev/net/tun itself is not open to it: give it mode 0666 or a group of this user (docs/deploy.md)`), { code: e.code }));
  }
  if (e.code === 'EPERM' || e.code === 'EACCES') {
    fatal('vport', Object.assign(new Error(`${e.message}`), { code: e.code }));
  }
  fatal('vport', err);
}

// Before any frame: the device's callbacks run only after this tick.
if (argv.pcap !== undefined) {
  try {
    client.startCapture(argv.pcap, capture!);
  } catch (err) {
    client.close();
    fatal('vport', err);
  }
}

// A join that completes while the sockets below open is announced after the ready line.
let joinedEarly: { switch: string } | undefined;
const onEarlyJoin = (info: { switch: string }): void => void (joinedEarly = info);
client.once('joined', onEarlyJoin);
const controlPath = argv.control ?? defaultPortControlPath(client.tap.name);
let control: ControlServer | undefined;
if (controlPath !== 'none') {
  try {
    control = await ControlServer.listen(controlPath, daemonCommands(client, () => portStatusReport(client)), { logger: log });
  } catch (err) {
    const e = err as { code?: string; message: string };
    const msg = `control socket ${controlPath}: ${e.code === 'EADDRINUSE' ? 'another vport is using it' : e.message}`;
    // The default is best effort (another instance, or no write access to /run); an explicit path is not.
    if (argv.control !== undefined) {
      client.close();
      fatal('vport', Object.assign(new Error(`${msg}: choose another with --control PATH`), { code: e.code }));
    }
    log.warn(`${msg}; 'vport status' will not reach this port (give --control PATH)`, { code: e.code });
  }
}
process.on('exit', () => control?.close());
let metrics: MetricsServer | undefined;
if (metricsAt !== undefined) {
  try {
    metrics = await MetricsServer.listen(metricsAt, () => renderPortMetrics(portStatusReport(client)));
  } catch (err) {
    client.close();
    fatal('vport', metricsListenError(argv.metrics!, err));
  }
}
client.off('joined', onEarlyJoin);
if (control !== undefined || metrics !== undefined) log.info('serving', { control: control?.path ?? 'none', ...(metricsAt !== undefined ? { metrics: `http://${argv.metrics}/metrics` } : {}) });

// Everything privileged is done: device created and configured, sockets bound.
try {
  dropPrivilegesIfHeld(argv['drop-privileges'], log);
} catch (err) {
  client.close();
  fatal('vport', err);
}

process.on('SIGUSR1', () => process.stdout.write(formatPortStatus(client.status()) + '\n'));
process.on('SIGHUP', () => {
  if (cfg.file !== undefined) {
    const path = cfg.file.path;
    try {
      const { file, plan } = reloadConfigFile(cfg, PORT_LIVE_FIELDS);
      cfg.file = file;
      const level = plan.apply['log-level'] as LogLevel | undefined;
      if (level !== undefined) log.setLevel(level);
      log.info('SIGHUP: config re-read', { file: path, applied: Object.keys(plan.apply).join(',') || 'nothing changed' });
      const unapplied = describeUnapplied(plan);
      if (unapplied !== undefined) log.warn(`SIGHUP: ${unapplied}`);
    } catch (err) {
      log.error(`SIGHUP: config not reloaded, keeping the running settings: ${(err as Error).message}`);
    }
  }
  log.info('SIGHUP: re-resolving the switch', { host: argv.host });
  client.reresolve();
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    log.info(`${sig}: leaving the switch and removing ${client.tap.name}`);
    const captured = client.stopCapture();
    client.close();
    control?.close();
    metrics?.close();
    void settleWithin(captured).then(() => setImmediate(() => process.exit(0)));
  });
}

// Only now, with every signal handled: a SIGTERM or SIGHUP sent on seeing these lines must not kill us.
process.stdout.write(`vport ${client.tap.name} ready, joining ${client.switchAddress}\n`);
client.on('joined', (info) => process.stdout.write(`vport ${client.tap.name} joined ${info.switch}\n`));
if (joinedEarly !== undefined) process.stdout.write(`vport ${client.tap.name} joined ${joinedEarly.switch}\n`);
