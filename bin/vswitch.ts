#!/usr/bin/env node
// vswitch: the virtual Ethernet switch. A UDP server that learns MAC addresses
// and forwards frames between its ports. Thin: parses flags, wires signals, calls lib.
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { SwitchServer, DEFAULT_SWITCH_PORT, type ListenAddress, type SwitchServerOptions } from '../lib/daemon/switch-server.js';
import { SecureSwitchEngine } from '../lib/secure/switch-engine.js';
import { KEYGEN_HINT, loadAllowList, loadPrivateKey, loadPsk } from '../cli/identity.js';
import { encodeKey, publicKeyOf } from '../lib/crypto/keys.js';
import { TRANSPORT_CIPHERS, type TransportCipherName } from '../lib/crypto/constants.js';
import { createLogger, LOG_LEVELS, type LogLevel, type LogFormat } from '../lib/core/log.js';
import { describeUnapplied, parseWithConfig, reloadConfigFile, SWITCH_FIELD_RULES, SWITCH_LIVE_FIELDS } from '../cli/config.js';
import { dropPrivilegesIfHeld } from '../lib/daemon/privilege.js';
import { captureOptionsFromFlags, cliFail, fatal, parseMetricsAddress, parseListen, parsePortNumber, parsePositive } from '../cli/args.js';
import { formatSwitchStatus, switchStatusReport } from '../lib/daemon/status.js';
import { ControlServer, daemonCommands, defaultSwitchControlPath } from '../lib/daemon/control.js';
import { MetricsServer, metricsListenError, renderSwitchMetrics } from '../lib/daemon/metrics.js';
import { runStatusCommand } from '../cli/status-command.js';
import { settleWithin, DEFAULT_PCAP_FILES, DEFAULT_PCAP_MAX_BYTES, type PcapOptions } from '../lib/daemon/pcap.js';

// `vswitch status ...` asks a running vswitch; it never starts one.
if (process.argv[2] === 'status') await runStatusCommand('vswitch', hideBin(process.argv).slice(1));

const parser = yargs(hideBin(process.argv))
  .scriptName('vswitch')
  .usage('$0 [PORT]\n\nRun a virtual Ethernet switch: vports that join it over UDP share one LAN.')
  .command('$0 [port]', false)
  .command('status', 'show the ports, MAC table and counters of the running vswitch (vswitch status --help)')
  .positional('port', { type: 'string', describe: `UDP port to listen on, all addresses, IPv4 and IPv6 (default ${DEFAULT_SWITCH_PORT})` })
  .option('key', { type: 'string', describe: "this switch's private key file (etherlink keygen)" })
  .option('allow', { type: 'string', describe: 'file of admitted port public keys, one per line with an optional name; SIGHUP reloads it' })
  .option('psk', { type: 'string', describe: 'pre-shared key file mixed into every handshake (etherlink genpsk); ports need the same' })
  .option('cipher', { choices: TRANSPORT_CIPHERS, default: 'chacha20-poly1305' as TransportCipherName, describe: 'transport cipher; every port must use the same (aes-256-gcm is faster on CPUs with AES instructions)' })
  .option('insecure', { type: 'boolean', default: false, describe: 'plaintext protocol 1: no keys, anyone who reaches the port can join and read traffic' })
  .option('rekey-after', { type: 'number', hidden: true, describe: 'seconds before session keys expire (tests)' })
  .option('listen', { type: 'string', array: true, describe: 'ADDR:PORT to listen on (repeatable; overrides PORT)' })
  .option('mac-age', { type: 'number', default: 300, describe: 'seconds before an idle learned MAC is forgotten' })
  .option('max-macs', { type: 'number', default: 65536, describe: 'learned MACs in total' })
  .option('max-macs-per-port', { type: 'number', default: 64, describe: 'learned MACs per port (a flood fills only its own quota)' })
  .option('mac-move-hold', { type: 'number', default: 3, describe: "seconds after its owner's last frame before another port may take a MAC (a refused claim is granted then)" })
  .option('port-timeout', { type: 'number', default: 30, describe: 'seconds without keepalives before a port is dropped' })
  .option('max-ports', { type: 'number', default: 1024, describe: 'ports that may join' })
  .option('pcap', { type: 'string', describe: 'capture every frame entering the switch to FILE: a pcap that tshark and Wireshark read' })
  .option('pcap-max-mb', { type: 'number', default: DEFAULT_PCAP_MAX_BYTES / 1_000_000, describe: 'MB per capture file before it rotates' })
  .option('pcap-files', { type: 'number', default: DEFAULT_PCAP_FILES, describe: 'capture files kept: FILE, FILE.1, ... (oldest deleted); 1 = stop when FILE is full' })
  .option('control', { type: 'string', describe: `control socket for 'vswitch status' (owner only; default ${defaultSwitchControlPath()}; 'none': no socket)` })
  .option('metrics', { type: 'string', describe: 'serve Prometheus metrics at http://ADDR:PORT/metrics (off by default)' })
  .option('config', { type: 'string', describe: 'JSON file of flags by their long name; flags given here override it; SIGHUP re-reads it' })
  .option('drop-privileges', { type: 'boolean', default: true, describe: 'give up every capability once the sockets are bound (when it holds any)' })
  .option('log-level', { choices: LOG_LEVELS, default: 'info' as LogLevel, describe: 'error, warn, info or debug' })
  .option('log-format', { choices: ['text', 'json'] as const, default: 'text' as LogFormat, describe: 'human lines or JSON lines' })
  .example('$0 --key /etc/etherlink/switch.key --allow /etc/etherlink/allow', `listen on UDP ${DEFAULT_SWITCH_PORT}, IPv4 and IPv6, admit the listed keys`)
  .example('$0 status', 'in another shell: the ports, keys, addresses, traffic and MACs of the running switch')
  .example('$0 --key switch.key --allow allow --metrics 127.0.0.1:9810', 'also serve Prometheus metrics')
  .example('$0 --config /etc/etherlink/vswitch.json --log-level debug', 'settings from a file, one overridden (docs/deploy.md)')
  .example('$0 --insecure', 'plaintext, for a trusted lab only')
  .example('$0 4789 --port-timeout 60', 'another port, keep silent ports for a minute')
  .example('$0 --key switch.key --allow allow --pcap /var/log/etherlink/sw.pcap --pcap-max-mb 50 --pcap-files 4', 'also capture the LAN: at most 4 files of 50 MB')
  .example('$0 --listen 192.0.2.1:9999 --listen [2001:db8::1]:9999', 'listen on two addresses')
  .epilogue('Signals: SIGINT/SIGTERM tell every port goodbye and exit; SIGHUP reloads the allow file (removed keys are disconnected) and re-reads --config (log-level and allow apply at once; other changes are logged as needing a restart); SIGUSR1 prints the ports, MAC table and counters.')
  // '--no-foo' would otherwise be reported as an unknown 'foo'.
  .parserConfiguration({ 'boolean-negation': false, 'camel-case-expansion': false })
  .strict()
  .fail(cliFail)
  .help()
  .version();
const cfg = await parseWithConfig(parser, hideBin(process.argv), SWITCH_FIELD_RULES);
const argv = cfg.argv;

const log = createLogger({ level: argv['log-level'], format: argv['log-format'], name: 'vswitch' });

let listen: ListenAddress[];
let metricsAt: { address: string; port: number } | undefined;
let capture: PcapOptions;
try {
  listen = argv.listen?.length ? argv.listen.map(parseListen) : [{ address: '::', port: argv.port !== undefined ? parsePortNumber(argv.port, 'PORT') : DEFAULT_SWITCH_PORT }];
  parsePositive(argv['mac-age'], 'mac-age', { min: 1 });
  parsePositive(argv['max-macs'], 'max-macs');
  parsePositive(argv['max-macs-per-port'], 'max-macs-per-port');
  parsePositive(argv['mac-move-hold'], 'mac-move-hold', { min: 0 });
  parsePositive(argv['port-timeout'], 'port-timeout', { min: 2, max: 65535 });
  parsePositive(argv['max-ports'], 'max-ports');
  if (argv.metrics !== undefined) metricsAt = parseMetricsAddress(argv.metrics);
  capture = captureOptionsFromFlags(argv);
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
      cipher: argv.cipher,
    };
    log.info('switch identity', { publicKey: encodeKey(publicKeyOf(key.value)), admitted: allow.length, psk: psk.value ? 'yes' : 'no', cipher: argv.cipher });
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

if (argv.pcap !== undefined) {
  try {
    server.startCapture(argv.pcap, capture!);
  } catch (err) {
    server.close();
    fatal('vswitch', err);
  }
}

const controlPath = argv.control ?? defaultSwitchControlPath();
let control: ControlServer | undefined;
if (controlPath !== 'none') {
  try {
    control = await ControlServer.listen(controlPath, daemonCommands(server, () => switchStatusReport(server)), { logger: log });
  } catch (err) {
    const e = err as { code?: string; message: string };
    const msg = `control socket ${controlPath}: ${e.code === 'EADDRINUSE' ? 'another vswitch is using it' : e.message}`;
    // The default is best effort (another instance, or no write access to /run); an explicit path is not.
    if (argv.control !== undefined) fatal('vswitch', Object.assign(new Error(`${msg}: choose another with --control PATH`), { code: e.code }));
    log.warn(`${msg}; 'vswitch status' will not reach this switch (give --control PATH)`, { code: e.code });
  }
}
process.on('exit', () => control?.close());
let metrics: MetricsServer | undefined;
if (metricsAt !== undefined) {
  try {
    metrics = await MetricsServer.listen(metricsAt, () => renderSwitchMetrics(switchStatusReport(server)));
  } catch (err) {
    fatal('vswitch', metricsListenError(argv.metrics!, err));
  }
}

log.info('listening', {
  udp: listen.map((l, i) => `${l.address.includes(':') ? `[${l.address}]` : l.address}:${server.ports[i]}`).join(','),
  portTimeout: `${argv['port-timeout']}s`,
  macAge: `${argv['mac-age']}s`,
  control: control?.path ?? 'none',
  ...(metricsAt !== undefined ? { metrics: `http://${argv.metrics}/metrics` } : {}),
});
// Everything privileged is done: sockets bound (a port < 1024 needs CAP_NET_BIND_SERVICE).
try {
  dropPrivilegesIfHeld(argv['drop-privileges'], log);
} catch (err) {
  server.close();
  fatal('vswitch', err);
}

let allowPath = argv.allow;
process.on('SIGHUP', () => {
  if (cfg.file !== undefined) {
    const path = cfg.file.path;
    try {
      const { file, plan } = reloadConfigFile(cfg, SWITCH_LIVE_FIELDS);
      cfg.file = file;
      const level = plan.apply['log-level'] as LogLevel | undefined;
      if (level !== undefined) log.setLevel(level);
      if ('allow' in plan.apply) {
        const next = plan.apply['allow'] as string | undefined;
        if (argv.insecure) log.warn('SIGHUP: allow changed, but an --insecure switch admits anyone: restart without --insecure to apply');
        else if (next === undefined) log.warn(`SIGHUP: allow removed from the config, but a switch needs one: keeping ${allowPath}`);
        else allowPath = next;
      }
      log.info('SIGHUP: config re-read', { file: path, applied: Object.keys(plan.apply).join(',') || 'nothing changed' });
      const unapplied = describeUnapplied(plan);
      if (unapplied !== undefined) log.warn(`SIGHUP: ${unapplied}`);
    } catch (err) {
      log.error(`SIGHUP: config not reloaded, keeping the running settings: ${(err as Error).message}`);
    }
  }
  if (!(server.engine instanceof SecureSwitchEngine) || allowPath === undefined) {
    log.info('SIGHUP: no allow file to reload (--insecure mode)');
    return;
  }
  try {
    const allow = loadAllowList(allowPath);
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
    const captured = server.stopCapture();
    server.close();
    control?.close();
    metrics?.close();
    // Let the LEAVE datagrams leave the socket queue and the capture reach its file.
    void settleWithin(captured).then(() => setImmediate(() => process.exit(0)));
  });
}

// Machine-readable readiness line for scripts and tests, printed once every signal is
// handled: a SIGHUP or SIGTERM sent on seeing it must not meet the default action.
process.stdout.write(`vswitch ready on UDP ${server.ports.join(',')}\n`);
