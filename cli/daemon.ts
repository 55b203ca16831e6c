// What vswitch and vport share once their options are parsed: the common flags,
// the control socket, metrics, dropping privileges, the signals (SIGHUP reload,
// SIGUSR1 status, SIGINT/SIGTERM shutdown) and the readiness line.
import type { Argv } from 'yargs';
import { EtherlinkError, errorCode } from '../lib/core/errors.js';
import { LOG_LEVELS, createLogger, type LevelledLogger, type LogFields, type LogFormat, type LogLevel } from '../lib/core/log.js';
import { ControlServer, daemonCommands, type ControlCommand } from '../lib/daemon/control.js';
import { MetricsServer, metricsListenError } from '../lib/daemon/metrics.js';
import { WebServer, loadWebToken, parseWebAddress, webListenError, webTokenProblem } from '../lib/daemon/web.js';
import { DEFAULT_PCAP_FILES, DEFAULT_PCAP_FORMAT, DEFAULT_PCAP_MAX_BYTES, settleWithin, type CaptureStatus, type PcapFormat, type PcapOptions } from '../lib/daemon/pcap.js';
import { dropPrivilegesIfHeld } from '../lib/daemon/privilege.js';
import { TRANSPORT_CIPHERS, type TransportCipherName } from '../lib/protocol/constants.js';
import { captureOptionsFromFlags, cliFail, fatal, parseMetricsAddress } from './args.js';
import { describeUnapplied, reloadConfigFile, type CliConfig, type ReloadPlan } from './config.js';

/** Ciphers a user may choose with --cipher ('none' is what --insecure means). */
export const CIPHER_CHOICES = TRANSPORT_CIPHERS.filter((c): c is Exclude<TransportCipherName, 'none'> => c !== 'none');

/** The flags vswitch and vport share, with their help texts. `peer` is who must match ("every port", "the switch"). */
export function commonOptions<T>(y: Argv<T>, prog: 'vswitch' | 'vport', peer: string) {
  return y
    .option('key', { type: 'string', describe: `this ${prog === 'vswitch' ? 'switch' : 'port'}'s private key file (etherlink keygen)` })
    .option('psk', { type: 'string', describe: `pre-shared key file mixed into every handshake (etherlink genpsk); ${peer} needs the same` })
    .option('cipher', {
      choices: CIPHER_CHOICES,
      default: 'chacha20-poly1305' as Exclude<TransportCipherName, 'none'>,
      describe: `transport cipher; ${peer} must use the same (aes-256-gcm is faster on CPUs with AES instructions)`,
    })
    .option('insecure', {
      type: 'boolean',
      default: false,
      describe: prog === 'vswitch' ? 'plaintext: no keys, any port may join and anyone on the path can read the LAN' : 'plaintext, to a switch that runs --insecure too',
    })
    .option('rekey-after', { type: 'number', hidden: true, describe: 'seconds between rekeys (tests; default 120)' })
    .option('pcap', { type: 'string', describe: `capture ${prog === 'vswitch' ? 'every frame entering the switch' : 'the frames on the device, both directions,'} to FILE (tshark and Wireshark read it)` })
    .option('pcap-format', {
      choices: ['pcapng', 'pcap'] as const,
      default: DEFAULT_PCAP_FORMAT,
      describe: `pcapng records ${prog === 'vswitch' ? 'the port each frame came from' : 'each frame\'s direction'}; pcap is classic libpcap (tcpdump -w) for older tools`,
    })
    .option('pcap-max-mb', { type: 'number', default: DEFAULT_PCAP_MAX_BYTES / 1_000_000, describe: 'MB per capture file before it rotates' })
    .option('pcap-files', { type: 'number', default: DEFAULT_PCAP_FILES, describe: 'capture files kept: FILE, FILE.1, ... (oldest deleted); 1 = stop when FILE is full' })
    .option('control', {
      type: 'string',
      describe: `control socket for '${prog} status' (owner only; default ${prog === 'vswitch' ? '/run/etherlink/vswitch.sock' : '/run/etherlink/vport-IFNAME.sock'}, with @NETNS before .sock in a named network namespace; 'none': no socket)`,
    })
    .option('metrics', { type: 'string', describe: 'serve Prometheus metrics at http://ADDR:PORT/metrics (off by default)' })
    .option('web', { type: 'string', describe: `serve a read-only live view of ${prog === 'vswitch' ? 'the ports, MAC table, counters and events' : 'this port, its peers and paths'} at http://ADDR:PORT/ (PORT alone: 127.0.0.1; any other address needs --web-token)` })
    .option('web-token', { type: 'string', describe: "file holding the token a browser presents once as ?token=TOKEN (then a cookie); make one with 'etherlink genpsk --out web.token'" })
    .option('config', { type: 'string', describe: 'JSON file of flags by their long name; flags given here override it; SIGHUP re-reads it' })
    .option('drop-privileges', { type: 'boolean', default: true, describe: `give up every capability once the ${prog === 'vswitch' ? 'sockets are bound' : 'device is configured'} (when it holds any)` })
    .option('log-level', { choices: LOG_LEVELS, default: 'info' as LogLevel, describe: 'error, warn, info or debug' })
    .option('log-format', { choices: ['text', 'json'] as const, default: 'text' as LogFormat, describe: 'human lines or JSON lines' })
    .parserConfiguration({ 'boolean-negation': false, 'camel-case-expansion': false })
    .strict()
    .fail(cliFail)
    .help()
    .version();
}

/** The parsed values of commonOptions. */
export interface CommonFlags {
  key?: string | undefined;
  psk?: string | undefined;
  cipher: Exclude<TransportCipherName, 'none'>;
  insecure: boolean;
  'rekey-after'?: number | undefined;
  pcap?: string | undefined;
  'pcap-format': PcapFormat;
  'pcap-max-mb': number;
  'pcap-files': number;
  control?: string | undefined;
  metrics?: string | undefined;
  web?: string | undefined;
  'web-token'?: string | undefined;
  config?: string | undefined;
  'drop-privileges': boolean;
  'log-level': LogLevel;
  'log-format': LogFormat;
}

/** The checked forms of the shared flags; exits with usage (2) naming the flag when one is bad. */
export function commonSettings(prog: 'vswitch' | 'vport', argv: CommonFlags): { log: LevelledLogger; capture: PcapOptions; metricsAt?: { address: string; port: number }; web?: WebSettings } {
  const log = createLogger({ level: argv['log-level'], format: argv['log-format'], name: prog });
  try {
    const capture = captureOptionsFromFlags(argv);
    return { log, capture, ...(argv.metrics !== undefined ? { metricsAt: parseMetricsAddress(argv.metrics) } : {}), ...webSettings(argv) };
  } catch (err) {
    return cliFail((err as Error).message, undefined);
  }
}

/** The live view's address and token, checked. */
export interface WebSettings {
  at: { address: string; port: number };
  token?: string | undefined;
}

/** --web and --web-token, checked: beyond loopback a token is required; a token without --web is a mistake. */
function webSettings(argv: CommonFlags): { web?: WebSettings } {
  if (argv.web === undefined) {
    if (argv['web-token'] !== undefined) throw new Error('--web-token is for the live view: add --web ADDR:PORT');
    return {};
  }
  const at = parseWebAddress(argv.web);
  const problem = webTokenProblem(at, argv['web-token']);
  if (problem !== undefined) throw new Error(problem);
  return { web: { at, ...(argv['web-token'] !== undefined ? { token: loadWebToken(argv['web-token']) } : {}) } };
}

/** What a daemon is to the runner: something that captures, reports and closes. */
export interface DaemonTarget {
  startCapture(file: string, opts: PcapOptions): CaptureStatus;
  stopCapture(): Promise<CaptureStatus | null>;
  captureStatus(): CaptureStatus | null;
  close(): void;
}

export interface DaemonSpec<A extends CommonFlags> {
  prog: 'vswitch' | 'vport';
  target: DaemonTarget;
  cfg: CliConfig<A>;
  log: LevelledLogger;
  capture: PcapOptions;
  metricsAt?: { address: string; port: number } | undefined;
  /** The live view (--web), served from report(). */
  web?: WebSettings | undefined;
  /** The control socket when --control is not given (this network namespace's default). */
  defaultControl: string;
  /** Config fields SIGHUP applies without a restart. */
  liveFields: ReadonlySet<string>;
  /** The status report the control socket and metrics serve. */
  report(): unknown;
  renderMetrics(report: never): string;
  /** More control socket commands than status and capture (vswitch: invite). */
  commands?: Record<string, ControlCommand>;
  /** The one-screen status SIGUSR1 prints. */
  table(): string;
  /** SIGHUP after the config file (if any) was re-read: the daemon's own reload. */
  reload(plan: ReloadPlan | undefined): void;
  /** Printed to stdout once every signal is handled: scripts wait for it. */
  readyLine: string;
  /** What the shutdown log line says, and its fields. */
  stopping(): [string, LogFields];
}

/**
 * Run a built daemon: capture from the start if asked, serve control and
 * metrics, drop privileges, handle the signals, print the readiness line.
 * Fatal problems exit with the code of their kind, after closing the daemon.
 */
export async function runDaemon<A extends CommonFlags>(spec: DaemonSpec<A>): Promise<void> {
  const { prog, target, cfg, log } = spec;
  const argv = cfg.argv;
  const die = (err: unknown): never => {
    target.close();
    return fatal(prog, err);
  };
  // Before any frame: the device's and sockets' callbacks run only after this tick.
  if (argv.pcap !== undefined) {
    try {
      target.startCapture(argv.pcap, spec.capture);
    } catch (err) {
      die(err);
    }
  }

  const controlPath = argv.control ?? spec.defaultControl;
  let control: ControlServer | undefined;
  if (controlPath !== 'none') {
    try {
      control = await ControlServer.listen(controlPath, { ...daemonCommands(target, () => spec.report()), ...spec.commands }, { logger: log });
    } catch (err) {
      const code = errorCode(err);
      const msg = `control socket ${controlPath}: ${code === 'EADDRINUSE' ? `another ${prog} is using it` : (err as Error).message}`;
      // The default is best effort (another instance, or no write access to /run); an explicit path is not.
      if (argv.control !== undefined) die(new EtherlinkError(code ?? 'EIO', `${msg}: choose another with --control PATH`));
      log.warn(`${msg}; '${prog} status' will not reach this ${prog} (give --control PATH)`, { code });
    }
  }
  process.on('exit', () => control?.close());
  let metrics: MetricsServer | undefined;
  if (spec.metricsAt !== undefined) {
    try {
      metrics = await MetricsServer.listen(spec.metricsAt, () => spec.renderMetrics(spec.report() as never));
    } catch (err) {
      die(metricsListenError(argv.metrics!, err));
    }
  }
  let web: WebServer | undefined;
  if (spec.web !== undefined) {
    try {
      web = await WebServer.listen(spec.web.at, () => spec.report(), { token: spec.web.token });
    } catch (err) {
      die(webListenError(argv.web!, err));
    }
  }
  const webUrl = spec.web !== undefined ? `http://${spec.web.at.address.includes(':') ? `[${spec.web.at.address}]` : spec.web.at.address}:${web?.port ?? spec.web.at.port}/` : undefined;
  log.info('serving', { control: control?.path ?? 'none', ...(argv.metrics !== undefined ? { metrics: `http://${argv.metrics}/metrics` } : {}), ...(webUrl !== undefined ? { web: `${webUrl}${spec.web?.token !== undefined ? ' (with ?token= once)' : ''}` } : {}) });

  // Everything privileged is done: device created and configured, sockets bound.
  try {
    dropPrivilegesIfHeld(argv['drop-privileges'], log);
  } catch (err) {
    die(err);
  }

  process.on('SIGHUP', () => spec.reload(reloadConfig(cfg, spec.liveFields, log)));
  process.on('SIGUSR1', () => process.stdout.write(spec.table() + '\n'));
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      const [what, fields] = spec.stopping();
      log.info(`${sig}: ${what}`, fields);
      const captured = target.stopCapture();
      target.close();
      control?.close();
      metrics?.close();
      web?.close();
      // Let the goodbyes leave the socket queue and the capture reach its file.
      void settleWithin(captured).then(() => setImmediate(() => process.exit(0)));
    });
  }
  // Only now, with every signal handled: a SIGTERM or SIGHUP sent on seeing this line must not kill us.
  process.stdout.write(`${spec.readyLine}\n`);
}

/** SIGHUP: re-read --config (if given), apply the log level, log what needs a restart. Returns the plan. */
function reloadConfig<A>(cfg: CliConfig<A>, live: ReadonlySet<string>, log: LevelledLogger): ReloadPlan | undefined {
  if (cfg.file === undefined) return undefined;
  const path = cfg.file.path;
  try {
    const { file, plan } = reloadConfigFile(cfg, live);
    cfg.file = file;
    const level = plan.apply['log-level'] as LogLevel | undefined;
    if (level !== undefined) log.setLevel(level);
    log.info('SIGHUP: config re-read', { file: path, applied: Object.keys(plan.apply).join(',') || 'nothing changed' });
    const unapplied = describeUnapplied(plan);
    if (unapplied !== undefined) log.warn(`SIGHUP: ${unapplied}`);
    return plan;
  } catch (err) {
    log.error(`SIGHUP: config not reloaded, keeping the running settings: ${(err as Error).message}`);
    return undefined;
  }
}
