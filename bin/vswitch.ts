#!/usr/bin/env node
// vswitch: the virtual Ethernet switch. Thin: options -> a SwitchServer -> the shared daemon runner.
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { SwitchServer, DEFAULT_SWITCH_PORT, type ListenAddress, type SwitchServerOptions } from '../lib/daemon/switch-server.js';
import { formatSwitchTable, switchStatusReport } from '../lib/daemon/status.js';
import { renderSwitchMetrics } from '../lib/daemon/metrics.js';
import { defaultSwitchControlPath } from '../lib/daemon/control.js';
import { checkVniFlag, cliFail, fatal, parseListen, parsePortNumber, parsePositive, parseVtepFlag } from '../cli/args.js';
import { DEFAULT_UNDERLAY_MTU, VXLAN_PORT } from '../lib/daemon/vxlan.js';
import { defaultRelayWorkers, MAX_RELAY_WORKERS } from '../lib/daemon/relay-workers.js';
import { parseWithConfig, SWITCH_FIELD_RULES, SWITCH_LIVE_FIELDS } from '../cli/config.js';
import { commonOptions, commonSettings, runDaemon } from '../cli/daemon.js';
import { KEYGEN_HINT, loadPrivateKey, loadPsk, readPemFlag } from '../cli/identity.js';
import { runStatusCommand } from '../cli/status-command.js';
import { inviteCommand, invitesCommand, revokeInviteCommand, runInviteCommand } from '../cli/invite.js';
import { loadNetworks, networkSources } from '../cli/networks.js';
import { DEFAULT_STORM_LIMIT } from '../lib/switch/switch.js';
import { EtherlinkError, errorCode } from '../lib/core/errors.js';

// `vswitch status ...` asks a running vswitch; it never starts one.
if (process.argv[2] === 'status') await runStatusCommand('vswitch', hideBin(process.argv).slice(1));
// `vswitch invite ...` asks a running vswitch for an invite (vport join).
if (process.argv[2] === 'invite') await runInviteCommand('vswitch', hideBin(process.argv).slice(1));

const parser = commonOptions(
  yargs(hideBin(process.argv))
    .scriptName('vswitch')
    .usage('$0 [PORT]\n\nRun a virtual Ethernet switch: vports that join it over UDP share one LAN.')
    .command('$0 [port]', false)
    .command('status', 'show the ports, MAC table and counters of the running vswitch (vswitch status --help)')
    .command('invite', 'make a one-time invite a new host joins with (vport join URL) (vswitch invite --help)')
    .positional('port', { type: 'string', describe: `UDP port to listen on, all addresses, IPv4 and IPv6 (default ${DEFAULT_SWITCH_PORT})` })
    .option('allow', { type: 'string', describe: 'file of admitted port public keys, one per line: KEY [name] [vlan=N | trunk=N,M [pvid=P]]; SIGHUP reloads it' })
    .option('network', { type: 'string', array: true, describe: 'NAME=ALLOWFILE: an isolated network of the keys in ALLOWFILE (repeatable, instead of --allow; a key may be in one network only); SIGHUP adds, removes and reloads them' })
    .option('storm-limit', { type: 'number', default: DEFAULT_STORM_LIMIT, describe: 'broadcast, multicast and unknown-unicast frames per second a port may send (the rest are dropped and counted; 0: no limit)' })
    .option('loop-block', { type: 'number', default: 60, describe: 'seconds the loop guard blocks a port whose MACs flap with another port (doubling for a repeat, up to an hour)' })
    .option('no-loop-guard', { type: 'boolean', default: false, describe: 'never block a port for MAC flapping (storm control still caps a loop)' })
    .option('listen', { type: 'string', array: true, describe: 'ADDR:PORT to listen on (repeatable; overrides PORT)' })
    .option('mac-age', { type: 'number', default: 300, describe: 'seconds before an idle learned MAC is forgotten' })
    .option('max-macs', { type: 'number', default: 65536, describe: 'learned MACs in total' })
    .option('max-macs-per-port', { type: 'number', default: 64, describe: 'learned MACs per port (a flood fills only its own quota)' })
    .option('mac-move-hold', { type: 'number', default: 3, describe: "seconds after its owner's last frame before another port may take a MAC (a refused claim is granted then)" })
    .option('port-timeout', { type: 'number', default: 30, describe: 'seconds without keepalives before a port is dropped' })
    .option('max-ports', { type: 'number', default: 1024, describe: 'ports that may join' })
    .option('reflector-port', { type: 'number', default: 0, describe: 'UDP port of the reflector that tells ports how their NAT maps (0: any free port)' })
    .option('no-reflector', { type: 'boolean', default: false, describe: 'no reflector: ports cannot tell how their NAT maps (they report it as unknown)' })
    .option('no-tcp', { type: 'boolean', default: false, describe: 'do not accept ports over TCP (by default each listen address takes TCP on its UDP port number too, for ports whose UDP is blocked)' })
    .option('ws', { type: 'string', describe: 'ADDR:PORT to accept ports over WebSocket (HTTP Upgrade on --ws-path): behind an HTTPS reverse proxy (nginx, Caddy), or with --tls-cert/--tls-key as wss:// itself' })
    .option('workers', { type: 'number', default: defaultRelayWorkers(), defaultDescription: 'one per core (none on one core)', describe: 'relay worker threads: pair data relayed on every core, each thread for a share of the destinations (0: the main thread relays alone)' })
    .option('vxlan', { type: 'string', describe: `[ADDR:]PORT: also be a VXLAN VTEP (RFC 7348, UDP ${VXLAN_PORT}): each --vtep is a port of the LAN. VXLAN is unauthenticated: only as safe as the underlay it crosses` })
    .option('vni', { type: 'number', describe: 'the VXLAN network identifier of the (first) network, 1..16777215 (with --vxlan)' })
    .option('vtep', { type: 'string', array: true, describe: `IP[:PORT] of a remote VTEP of --vni (repeatable; PORT defaults to ${VXLAN_PORT}); only these are heard` })
    .option('vtep-max-macs', { type: 'number', defaultDescription: 'the network\'s --max-macs', describe: 'learned MACs each VTEP port may hold (a VTEP stands for many hosts, so --max-macs-per-port does not apply to it)' })
    .option('vxlan-mtu', { type: 'number', default: DEFAULT_UNDERLAY_MTU, describe: 'MTU of the underlay the VTEPs are on: frames larger than it allows once encapsulated (50 bytes over IPv4, 70 over IPv6) are dropped and counted' })
    .option('ws-path', { type: 'string', default: '/etherlink', describe: 'the path the WebSocket listener serves' })
    .option('tls-cert', { type: 'string', describe: 'PEM certificate chain: the --ws listener speaks TLS (wss://) itself' })
    .option('tls-key', { type: 'string', describe: 'PEM private key of --tls-cert' })
    .example('$0 --key /etc/etherlink/switch.key --allow /etc/etherlink/allow', `listen on UDP ${DEFAULT_SWITCH_PORT}, IPv4 and IPv6, admit the listed keys`)
    .example('$0 status', 'in another shell: the ports, keys, addresses, traffic and MACs of the running switch')
    .example('$0 invite --name laptop', 'in another shell: a one-time URL; on the laptop, vport join URL --ip 10.99.0.9/24 adds its key to the allow file')
    .example('$0 --key switch.key --allow allow --metrics 127.0.0.1:9810', 'also serve Prometheus metrics')
    .example('$0 --key switch.key --allow allow --web 8080', 'also serve a live view at http://127.0.0.1:8080/ (ports, rates, MAC table, events)')
    .example('$0 --key switch.key --allow allow --web 0.0.0.0:8080 --web-token web.token', "a live view for other hosts: make the token with 'etherlink genpsk --out web.token', open http://HOST:8080/?token=TOKEN once")
    .example('$0 --config /etc/etherlink/vswitch.json --log-level debug', 'settings from a file, one overridden (docs/deploy.md)')
    .example('$0 --key switch.key --network red=red.allow --network blue=blue.allow', 'two isolated LANs on one port: each key joins the network whose file lists it')
    .example('$0 --insecure', 'plaintext, any port may join: for a trusted lab only')
    .example('$0 4789 --key switch.key --allow allow --port-timeout 60', 'another port, keep silent ports for a minute')
    .example('$0 --key switch.key --allow allow --pcap /var/log/etherlink/sw.pcapng --pcap-max-mb 50 --pcap-files 4', 'also capture the LAN: at most 4 files of 50 MB')
    .example('$0 --listen 192.0.2.1:9999 --listen [2001:db8::1]:9999 --key switch.key --allow allow', 'listen on two addresses')
    .example('$0 --key switch.key --allow allow --vxlan 4789 --vni 100 --vtep 192.0.2.7 --vtep 192.0.2.8', 'also switch for two kernel VXLAN hosts (ip link add vx0 type vxlan id 100 remote SWITCH dstport 4789)')
    .example('$0 --key switch.key --allow allow --ws 127.0.0.1:8080', 'also take WebSocket ports from a reverse proxy on this host (README: "When UDP is blocked")')
    .example('$0 --key switch.key --allow allow --ws [::]:443 --tls-cert fullchain.pem --tls-key privkey.pem', 'serve wss:// on 443 without a proxy')
    .epilogue('Signals: SIGINT/SIGTERM tell every port goodbye and exit; SIGHUP reloads the allow files (removed keys, and removed networks\' members, are disconnected; new networks start) and re-reads --config (log-level, allow, network and networks apply at once; other changes are logged as needing a restart); SIGUSR1 prints the networks, ports, MAC table and counters.'),
  'vswitch',
  'every port',
);
const cfg = await parseWithConfig(parser, hideBin(process.argv), SWITCH_FIELD_RULES);
const argv = cfg.argv;
const { log, capture, metricsAt, web } = commonSettings('vswitch', argv);

let listen: ListenAddress[];
let ws: SwitchServerOptions['ws'];
let vxlan: NonNullable<SwitchServerOptions['vxlan']> | undefined;
try {
  listen = argv.listen?.length ? argv.listen.map((l) => parseListen(l)) : [{ address: '::', port: argv.port !== undefined ? parsePortNumber(argv.port, 'PORT') : DEFAULT_SWITCH_PORT }];
  parsePositive(argv['mac-age'], 'mac-age', { min: 1 });
  parsePositive(argv['max-macs'], 'max-macs');
  parsePositive(argv['max-macs-per-port'], 'max-macs-per-port');
  parsePositive(argv['mac-move-hold'], 'mac-move-hold', { min: 0 });
  parsePositive(argv['port-timeout'], 'port-timeout', { min: 2, max: 65535 });
  parsePositive(argv['max-ports'], 'max-ports');
  parsePositive(argv['reflector-port'], 'reflector-port', { min: 0, max: 65535 });
  parsePositive(argv['storm-limit'], 'storm-limit', { min: 0 });
  parsePositive(argv['loop-block'], 'loop-block', { min: 1 });
  if ((argv['tls-cert'] === undefined) !== (argv['tls-key'] === undefined)) {
    throw new Error(`--${argv['tls-cert'] === undefined ? 'tls-key' : 'tls-cert'} needs --${argv['tls-cert'] === undefined ? 'tls-cert' : 'tls-key'} too: TLS takes a certificate and its key`);
  }
  parsePositive(argv.workers, 'workers', { min: 0, max: MAX_RELAY_WORKERS });
  if (!Number.isInteger(argv.workers)) throw new Error(`--workers must be a whole number of threads (got ${argv.workers})`);
  if (argv.vxlan !== undefined) {
    vxlan = { listen: /^\d+$/.test(argv.vxlan) ? { address: '::', port: parsePortNumber(argv.vxlan, '--vxlan') } : parseListen(argv.vxlan, '--vxlan'), mtu: parsePositive(argv['vxlan-mtu'], 'vxlan-mtu', { min: 576, max: 65535 }) };
    if (argv.vni !== undefined) vxlan.vni = checkVniFlag(argv.vni);
    if (argv.vtep !== undefined) vxlan.vteps = argv.vtep.map((v) => parseVtepFlag(v));
    if (argv['vtep-max-macs'] !== undefined) vxlan.maxMacsPerVtep = parsePositive(argv['vtep-max-macs'], 'vtep-max-macs');
  } else {
    const stray = (['vni', 'vtep', 'vtep-max-macs'] as const).find((k) => argv[k] !== undefined);
    if (stray !== undefined) throw new Error(`--${stray} is for a VXLAN VTEP: add --vxlan [ADDR:]PORT (e.g. --vxlan ${VXLAN_PORT})`);
  }
  if (argv.ws === undefined && argv['tls-cert'] !== undefined) throw new Error('--tls-cert and --tls-key are for the WebSocket listener: add --ws ADDR:PORT');
  if (!argv['ws-path'].startsWith('/')) throw new Error(`--ws-path '${argv['ws-path']}' must start with /`);
  if (argv.ws !== undefined) {
    const at = parseListen(argv.ws);
    ws = { ...at, path: argv['ws-path'] };
    if (argv['tls-cert'] !== undefined) ws = { ...ws, tlsCert: readPemFlag(argv['tls-cert'], '--tls-cert'), tlsKey: readPemFlag(argv['tls-key']!, '--tls-key') };
  }
} catch (err) {
  cliFail((err as Error).message, undefined);
}

let identity: Pick<SwitchServerOptions, 'privateKey' | 'networks' | 'psk' | 'cipher' | 'insecure'>;
/** What the networks are read from now (the config file may change them on SIGHUP). */
const netOpts = { allow: argv.allow, network: argv.network, networks: (argv as Record<string, unknown>)['networks'] };
if (argv.insecure) {
  const extra = (['key', 'allow', 'psk', 'network'] as const).find((k) => argv[k] !== undefined) ?? (netOpts.networks !== undefined ? 'networks' : undefined) ?? (argv.cipher !== 'chacha20-poly1305' ? 'cipher' : undefined);
  if (extra !== undefined) cliFail(`--insecure uses the published switch key, admits any port and sends in clear: drop ${extra === 'networks' ? 'the config\'s "networks"' : `--${extra}`} (or drop --insecure)`, undefined);
  log.warn('INSECURE: plaintext, and any port that reaches this switch may join the LAN and read its traffic');
  identity = { insecure: true };
} else {
  if (argv.key === undefined) cliFail(`no --key: a switch needs a private key; ${KEYGEN_HINT}`, undefined);
  let sources;
  try {
    sources = networkSources(netOpts);
  } catch (err) {
    cliFail((err as Error).message, undefined);
  }
  if (sources.length === 0) cliFail("no --allow: list the public keys of the ports to admit in a file ('etherlink pubkey KEYFILE' on each port) and pass --allow FILE (or --network NAME=FILE for each of several networks)", undefined);
  try {
    const key = loadPrivateKey(argv.key);
    const psk = loadPsk(argv.psk);
    for (const w of [...key.warnings, ...psk.warnings]) log.warn(w);
    identity = { privateKey: key.value, networks: loadNetworks(sources), ...(psk.value ? { psk: psk.value } : {}), cipher: argv.cipher };
  } catch (err) {
    fatal('vswitch', err);
  }
}

let server: SwitchServer;
try {
  server = new SwitchServer({
    listen,
    ...identity,
    macAgeS: argv['mac-age'],
    maxMacs: argv['max-macs'],
    maxMacsPerPort: argv['max-macs-per-port'],
    macMoveHoldS: argv['mac-move-hold'],
    portTimeoutS: Math.round(argv['port-timeout']),
    maxPorts: argv['max-ports'],
    stormLimit: argv['storm-limit'],
    loopBlockS: argv['loop-block'],
    ...(argv['no-loop-guard'] ? { flapThreshold: 0 } : {}),
    reflectorPort: argv['no-reflector'] ? false : argv['reflector-port'],
    tcp: !argv['no-tcp'],
    ...(ws !== undefined ? { ws } : {}),
    ...(vxlan !== undefined ? { vxlan } : {}),
    workers: argv.workers,
    ...(argv['rekey-after'] !== undefined ? { keyLifetimeS: argv['rekey-after'] * 1.5 } : {}),
    logger: log,
  });
} catch (err) {
  if (errorCode(err) === 'EADDRINUSE' && !(err as Error).message.startsWith('VXLAN')) {
    const where = listen.map((l) => `${l.address}:${l.port}`).join(', ');
    fatal('vswitch', new EtherlinkError('EADDRINUSE', `UDP ${where} is already in use: stop the other switch or choose another port (vswitch PORT)`, { cause: err }));
  }
  fatal('vswitch', err);
}
try {
  await server.listening;
} catch (err) {
  server.close();
  if (errorCode(err) === 'EADDRINUSE') {
    fatal('vswitch', new EtherlinkError('EADDRINUSE', `${(err as Error).message}: a TCP port the switch needs is taken (its UDP port number, or --ws): free it, or give --no-tcp / another --ws port`, { cause: err }));
  }
  fatal('vswitch', err);
}
log.info('switch identity', {
  publicKey: server.publicKey,
  mode: server.mode,
  ...(identity.networks ? { networks: identity.networks.map((n) => `${n.name}(${n.allow.length})`).join(',') } : {}),
  psk: identity.psk ? 'yes' : 'no',
  cipher: identity.cipher ?? 'none',
});
log.info('listening', {
  udp: listen.map((l, i) => `${l.address.includes(':') ? `[${l.address}]` : l.address}:${server.ports[i]}`).join(','),
  tcp: argv['no-tcp'] ? 'off' : server.snapshot().tcpPorts.join(','),
  ...(ws !== undefined ? { ws: server.snapshot().ws } : {}),
  portTimeout: `${argv['port-timeout']}s`,
  macAge: `${argv['mac-age']}s`,
});

await runDaemon({
  prog: 'vswitch',
  target: server,
  cfg,
  log,
  capture,
  metricsAt,
  web,
  defaultControl: defaultSwitchControlPath(),
  liveFields: SWITCH_LIVE_FIELDS,
  report: () => switchStatusReport(server),
  renderMetrics: renderSwitchMetrics,
  ...(argv.insecure ? {} : { commands: { invite: inviteCommand(server, { address: listen[0]!.address, port: server.ports[0]! }), invites: invitesCommand(server), 'invite-revoke': revokeInviteCommand(server) } }),
  table: () => formatSwitchTable(switchStatusReport(server)),
  reload: (plan) => {
    const changed = plan !== undefined ? (['allow', 'network', 'networks'] as const).filter((k) => k in plan.apply) : [];
    if (argv.insecure) {
      if (changed.length > 0) log.warn(`SIGHUP: ${changed.join(', ')} changed, but an --insecure switch admits anyone: restart without --insecure to apply`);
      else log.info('SIGHUP: no allow file to reload (--insecure admits any port)');
      return;
    }
    const next = { ...netOpts };
    for (const k of changed) (next as Record<string, unknown>)[k] = plan!.apply[k];
    try {
      const sources = networkSources(next);
      if (sources.length === 0) throw new Error('the config now names no allow file or network, but a switch needs one');
      const specs = loadNetworks(sources);
      const r = server.setNetworks(specs);
      Object.assign(netOpts, next);
      if (specs.length === 1 && r.added.length === 0 && r.removed.length === 0) {
        // One network, as with --allow: the line reads as it always has.
        log.info('SIGHUP: allow file reloaded', { ...(specs[0]!.name !== 'default' ? { network: specs[0]!.name } : {}), admitted: specs[0]!.allow.length, disconnected: r.disconnected.join(',') || 'none' });
      } else log.info('SIGHUP: networks reloaded', {
        networks: specs.map((n) => `${n.name}(${n.allow.length})`).join(','),
        added: r.added.join(',') || 'none',
        removed: r.removed.join(',') || 'none',
        disconnected: r.disconnected.join(',') || 'none',
      });
      if (r.restartNeeded.length > 0) log.warn(`SIGHUP: limits of network ${r.restartNeeded.join(', ')} changed: restart to apply`);
    } catch (err) {
      log.error(`SIGHUP: networks not reloaded, keeping the old ones: ${(err as Error).message}`);
    }
  },
  readyLine: `vswitch ready on UDP ${server.ports.join(',')}`,
  stopping: () => ['telling ports goodbye', { ports: server.memberCount }],
});

