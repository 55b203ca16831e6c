#!/usr/bin/env node
// vport: create a TAP device on this host and join it to a vswitch over UDP (or TCP, or WebSocket where UDP is blocked).
// Thin: options -> a PortClient -> the shared daemon runner.
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { checkSwitchAddress, isSwitchUrl, PortClient, type PortClientOptions } from '../lib/daemon/port-client.js';
import { formatPortStatus, portStatusReport } from '../lib/daemon/status.js';
import { renderPortMetrics } from '../lib/daemon/metrics.js';
import { defaultPortControlPath } from '../lib/daemon/control.js';
import { MAX_MTU, MIN_MTU, parseCidr, validateTapOptions } from '../lib/io/tap.js';
import { DEFAULT_TAP_MTU, MAX_PAIR_SESSIONS_DEFAULT, MEMBER_ID_MAX } from '../lib/protocol/constants.js';
import { cliFail, fatal, parsePortNumber, UsageError } from '../cli/args.js';
import { parseWithConfig, PORT_FIELD_RULES, PORT_LIVE_FIELDS } from '../cli/config.js';
import { commonOptions, commonSettings, runDaemon } from '../cli/daemon.js';
import { KEYGEN_HINT, loadPrivateKey, loadPsk, parsePublicKeyFlag, readPemFlag } from '../cli/identity.js';
import { runStatusCommand } from '../cli/status-command.js';
import { prepareJoin, writeJoinConfig, type JoinPlan } from '../cli/join.js';
import { flagsOnCommandLine } from '../cli/config.js';
import { EtherlinkError, errorCode } from '../lib/core/errors.js';

// `vport status ...` asks a running vport (and is never read as HOST=status).
if (process.argv[2] === 'status') await runStatusCommand('vport', hideBin(process.argv).slice(1));
// `vport join URL ...` is vport with the switch and key the invite names, and the invite's proof in its handshakes.
let join: JoinPlan | undefined;
if (process.argv[2] === 'join') {
  join = prepareJoin(hideBin(process.argv).slice(1));
  process.argv = [process.argv[0]!, process.argv[1]!, ...join.args];
}

const parser = commonOptions(
  yargs(hideBin(process.argv))
    .scriptName('vport')
    .usage('$0 HOST PORT\n$0 wss://HOST/PATH\n\nCreate a TAP device and join it to the vswitch at HOST:PORT (UDP; TCP on the same port where UDP is blocked), or at its WebSocket URL.')
    .command('$0 [host] [port]', false)
    .command('status', 'show the session, switch, RTT and counters of a running vport (vport status --help)')
    .command('join', "join with the one-time URL 'vswitch invite' printed: vport join URL --ip ADDR/PREFIX (vport join --help)")
    .positional('host', { type: 'string', describe: 'switch host name, IPv4 or IPv6 address, or its ws:// / wss:// URL' })
    .positional('port', { type: 'string', describe: 'switch UDP (and TCP) port; not with a URL' })
    .option('transport', { type: 'string', choices: ['auto', 'udp', 'tcp', 'ws'], default: 'auto', describe: 'how to reach the switch: auto tries UDP, then TCP on the same port, then --ws, and returns to UDP once it works again' })
    .option('ws', { type: 'string', describe: "the switch's WebSocket URL (ws://HOST:PORT/etherlink or wss://...), tried after TCP; HTTPS_PROXY/HTTP_PROXY and NO_PROXY are honoured" })
    .option('ca', { type: 'string', describe: 'PEM file of extra CA certificates to trust for wss:// (a private CA); the system CAs stay trusted' })
    .option('switch-key', { type: 'string', describe: "the switch's public key (etherlink pubkey on the switch): a switch that can't prove it is refused" })
    .option('name', { type: 'string', default: 'etl%d', describe: 'interface name, or a pattern with %d' })
    .option('ip', { type: 'string', array: true, describe: 'address in CIDR form (repeatable; IPv4 and IPv6)' })
    .option('mtu', { type: 'number', default: DEFAULT_TAP_MTU, describe: 'device MTU (default fits a 1500-byte IPv6 underlay)' })
    .option('mac', { type: 'string', describe: 'device MAC address (default: random)' })
    .option('max-pair-sessions', { type: 'number', default: MAX_PAIR_SESSIONS_DEFAULT, describe: 'end-to-end sessions with other ports held at once; the least recently used closes first' })
    .option('no-direct', { type: 'boolean', default: false, describe: 'never talk to other ports directly: the switch relays everything (still sealed end to end). Default: direct paths, through NAT when needed' })
    .option('port-name', { type: 'string', describe: "how the switch names this port where its allow file gives no name (default HOSTNAME/IFNAME)" })
    .example('$0 join etherlink://vpn.example.net:9999/AQ... --ip 10.99.0.9/24 --config /etc/etherlink/vport.json', "join with an invite (vswitch invite on the switch); later runs: vport --config /etc/etherlink/vport.json")
    .example('$0 switch.example.net 9999 --key port.key --switch-key SWITCHPUB= --name etl0 --ip 10.99.0.2/24', 'join with an IPv4 address')
    .example('$0 2001:db8::1 9999 --key port.key --switch-key SWITCHPUB= --ip 10.99.0.3/24 --ip fd00:99::3/64', 'an IPv6 switch, dual-stack LAN')
    .example('$0 192.0.2.1 9999 --key port.key --switch-key SWITCHPUB= --ip 10.99.0.5/24 --no-direct', 'never talk to other ports directly: the switch relays (sealed end to end)')
    .example('$0 vpn.example.net 9999 --ws wss://vpn.example.net/etherlink --key port.key --switch-key SWITCHPUB= --ip 10.99.0.6/24', 'UDP, falling back to TCP and then to a WebSocket behind an HTTPS proxy where UDP is blocked')
    .example('$0 wss://vpn.example.net/etherlink --key port.key --switch-key SWITCHPUB= --ip 10.99.0.7/24', 'WebSocket only (port 443 through any web proxy)')
    .example('$0 192.0.2.1 9999 --key port.key --switch-key SWITCHPUB= --ip 10.99.0.2/24 --web 8081', 'also serve a live view of this port, its peers and paths, at http://127.0.0.1:8081/')
    .example('$0 --config /etc/etherlink/vport.json', 'everything from a file (docs/deploy.md)')
    .example('$0 192.0.2.1 9999 --insecure --name etl0 && ip addr add 10.99.0.4/24 dev etl0', 'plaintext lab; no --ip: address it yourself')
    .epilogue('Needs CAP_NET_ADMIN (root, or setcap/AmbientCapabilities). Once the device is configured it drops every capability (--drop-privileges). When the device goes down (ip link set DEV down) the switch withdraws its MACs at once. SIGINT/SIGTERM say goodbye to the switch and remove the device; SIGHUP re-resolves the switch name and re-reads --config (log-level applies at once; other changes are logged as needing a restart); SIGUSR1 prints the session and counters.'),
  'vport',
  'the switch',
);
const cfg = await parseWithConfig(parser, hideBin(process.argv), PORT_FIELD_RULES);
const argv = cfg.argv;
const isUrl = argv.host !== undefined && isSwitchUrl(argv.host);
if (argv.host === undefined || (argv.port === undefined && !isUrl)) {
  cliFail(`Not enough non-option arguments: got ${argv.host === undefined ? 0 : 1}, need at least 2 (HOST PORT, a wss:// URL, or "host" and "port" in --config FILE)`, undefined);
}
if (isUrl && argv.port !== undefined) cliFail(`a URL switch address (${argv.host}) takes no PORT: put the port in the URL (wss://HOST:PORT/PATH)`, undefined);
const { log, capture, metricsAt, web } = commonSettings('vport', argv);
if (join !== undefined) {
  if (join.madeKey !== undefined) log.info('made a key for this port', { file: join.keyFile, publicKey: join.madeKey });
  if (join.configOut !== undefined) {
    const given = flagsOnCommandLine(join.args);
    const settings: Record<string, unknown> = { host: argv.host, port: Number(argv.port) };
    for (const k of given) if (k !== 'config' && (argv as Record<string, unknown>)[k] !== undefined) settings[k] = (argv as Record<string, unknown>)[k];
    try {
      writeJoinConfig(join.configOut, settings);
    } catch (err) {
      fatal('vport', new EtherlinkError(errorCode(err) ?? 'EIO', `--config ${join.configOut}: cannot write it: ${(err as Error).message}`));
    }
    log.info('saved the settings: once joined, restart with vport --config FILE (the invite is spent)', { file: join.configOut });
  }
}

let port = 0;
let ca: Buffer | undefined;
const tap = { name: argv.name, mtu: argv.mtu, addresses: argv.ip ?? [], ...(argv.mac !== undefined ? { mac: argv.mac } : {}) };
try {
  if (!isUrl) {
    port = parsePortNumber(argv.port!, 'PORT');
    if (port === 0) throw new UsageError('PORT must be the switch port, 1..65535');
  }
  // The check PortClient.start makes, made before anything is opened; the message names the flag.
  try {
    checkSwitchAddress({ host: argv.host!, transport: argv.transport as PortClientOptions['transport'] & string, ...(argv.ws !== undefined ? { ws: argv.ws } : {}) });
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/^transport '(\w+)'/, '--transport $1').replace(/^ws '/, "--ws '").replace(/^switch address '/, "HOST '"));
  }
  if (argv.ca !== undefined) ca = readPemFlag(argv.ca, '--ca', '-----BEGIN CERTIFICATE-----');
  // Each device flag checked alone, so the message names the flag.
  flag('--name', () => validateTapOptions({ name: tap.name }));
  for (const ip of tap.addresses) flag('--ip', () => parseCidr(ip));
  if (!Number.isInteger(tap.mtu) || tap.mtu < MIN_MTU || tap.mtu > MAX_MTU) throw new UsageError(`--mtu ${tap.mtu} is out of range: use an integer from ${MIN_MTU} to ${MAX_MTU}`);
  if (tap.mac !== undefined) flag('--mac', () => validateTapOptions({ mac: tap.mac }));
  const maxPairs = argv['max-pair-sessions'];
  if (!Number.isInteger(maxPairs) || maxPairs < 1 || maxPairs > MEMBER_ID_MAX) throw new UsageError(`--max-pair-sessions ${maxPairs} is out of range: use an integer from 1 to ${MEMBER_ID_MAX}`);
} catch (err) {
  cliFail((err as Error).message, undefined);
}

/** Run a check of one flag's value; its error becomes a usage error that starts with the flag. */
function flag(name: string, check: () => unknown): void {
  try {
    check();
  } catch (err) {
    throw new UsageError(`${name} ${(err as Error).message}`);
  }
}

// A malformed --switch-key is a usage error, named before any file is read.
let switchKey: Buffer | undefined;
try {
  if (argv['switch-key'] !== undefined && !argv.insecure) switchKey = parsePublicKeyFlag(argv['switch-key'], '--switch-key');
} catch (err) {
  cliFail((err as Error).message, undefined);
}

let identity: Pick<PortClientOptions, 'privateKey' | 'switchPublicKey' | 'psk' | 'cipher' | 'insecure'>;
try {
  const key = argv.key !== undefined ? loadPrivateKey(argv.key) : undefined;
  if (argv.insecure) {
    const extra = (['switch-key', 'psk'] as const).find((k) => argv[k] !== undefined) ?? (argv.cipher !== 'chacha20-poly1305' ? 'cipher' : undefined);
    if (extra !== undefined) cliFail(`--insecure talks to the published switch key in clear: drop --${extra} (or drop --insecure)`, undefined);
    log.warn("INSECURE: plaintext — anyone on the path can read and inject this LAN's traffic");
    identity = { insecure: true, ...(key ? { privateKey: key.value } : {}) };
  } else {
    if (key === undefined) cliFail(`no --key: a port needs a private key; ${KEYGEN_HINT}`, undefined);
    if (switchKey === undefined) cliFail("no --switch-key: give the switch's public key ('etherlink pubkey KEYFILE' on the switch); the port trusts no other switch", undefined);
    const psk = loadPsk(argv.psk);
    identity = { privateKey: key.value, switchPublicKey: switchKey, ...(psk.value ? { psk: psk.value } : {}), cipher: argv.cipher };
    for (const w of psk.warnings) log.warn(w);
  }
  for (const w of key?.warnings ?? []) log.warn(w);
} catch (err) {
  fatal('vport', err);
}

let client: PortClient;
try {
  client = await PortClient.start({
    ...identity,
    host: argv.host,
    ...(isUrl ? {} : { port }),
    transport: argv.transport as PortClientOptions['transport'] & string,
    ...(argv.ws !== undefined ? { ws: argv.ws } : {}),
    ...(ca !== undefined ? { ca } : {}),
    tap,
    ...(argv['port-name'] !== undefined ? { name: argv['port-name'] } : {}),
    ...(argv['rekey-after'] !== undefined ? { rekeyAfterS: argv['rekey-after'] } : {}),
    maxPairSessions: argv['max-pair-sessions'],
    direct: !argv['no-direct'],
    ...(join !== undefined ? { invite: join.invite } : {}),
    logger: log,
  });
} catch (err) {
  const e = err as { code?: string; syscall?: string; message: string };
  if (e.code === 'EACCES' && e.syscall === 'open') {
    // The device node's mode, not a capability: /dev/net/tun is 0600 root where no udev set it to 0666.
    fatal('vport', new EtherlinkError('EACCES', `${e.message}; if this user holds CAP_NET_ADMIN, /dev/net/tun itself is not open to it: give it mode 0666 or a group of this user (docs/deploy.md)`, { syscall: 'open', cause: err }));
  }
  fatal('vport', err);
}
log.info('port identity', { publicKey: client.publicKey, mode: identity.insecure ? 'insecure' : 'secure', psk: identity.psk ? 'yes' : 'no', cipher: identity.cipher ?? 'none' });

// A join that completes while the runner opens its sockets is announced after the ready line.
let joinedEarly: { switch: string } | undefined;
const onEarlyJoin = (info: { switch: string }): void => void (joinedEarly = info);
client.once('joined', onEarlyJoin);
if (join !== undefined) {
  // An invite refused (unknown, expired, used) stays refused: say so and stop rather than retry.
  client.once('invite-refused', (message) => {
    client.close();
    fatal('vport join', new EtherlinkError('ERR_INVITE_REFUSED', message));
  });
  client.once('joined', () => log.info("joined by invite: this port's key is in the switch's allow file now", { key: join!.keyFile }));
}
await runDaemon({
  prog: 'vport',
  target: client,
  cfg,
  log,
  capture,
  metricsAt,
  web,
  defaultControl: defaultPortControlPath(client.tap.name),
  liveFields: PORT_LIVE_FIELDS,
  report: () => portStatusReport(client),
  renderMetrics: renderPortMetrics,
  table: () => formatPortStatus(client.status()),
  reload: () => {
    log.info('SIGHUP: re-resolving the switch', { host: argv.host });
    client.reresolve();
  },
  readyLine: `vport ${client.tap.name} ready, joining ${client.switchAddress}`,
  stopping: () => [`leaving the switch and removing ${client.tap.name}`, {}],
});
client.off('joined', onEarlyJoin);
client.on('joined', (info) => process.stdout.write(`vport ${client.tap.name} joined ${info.switch}\n`));
if (joinedEarly !== undefined) process.stdout.write(`vport ${client.tap.name} joined ${joinedEarly.switch}\n`);
