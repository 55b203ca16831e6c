// `vswitch status` and `vport status`: ask a running daemon over its control
// socket and print the answer for humans, or as JSON with --json.
import yargs from 'yargs';
import { controlRequest, defaultPortControlPath, defaultSwitchControlPath, portsWithDefaultSockets } from '../lib/daemon/control.js';
import { cliFail, EXIT, fatal, UsageError } from './args.js';
import { formatPortReport, formatSwitchReport, networkReport, type PortStatusReport, type SwitchStatusReport } from '../lib/daemon/status.js';
import { EtherlinkError } from '../lib/core/errors.js';

type Prog = 'vswitch' | 'vport';


/** Which socket to ask: --control, else the default (for vport: --name, else the only one there is). */
function socketPath(prog: Prog, argv: { control?: string | undefined; name?: string | undefined }): string {
  if (argv.control !== undefined) return argv.control;
  if (prog === 'vswitch') return defaultSwitchControlPath();
  if (argv.name !== undefined) return defaultPortControlPath(argv.name);
  const found = portsWithDefaultSockets();
  if (found.length > 1) throw new UsageError(`several vports run here (${found.join(', ')}): choose one with --name IFNAME`);
  return defaultPortControlPath(found[0] ?? 'IFNAME');
}

/** Parse `args` (after the word 'status'), query the daemon, print, exit. */
export async function runStatusCommand(prog: Prog, args: string[]): Promise<never> {
  const y = yargs(args)
    .scriptName(`${prog} status`)
    .usage(
      prog === 'vswitch'
        ? '$0 [--control PATH] [--network NAME] [--json]\n\nShow the networks and ports of a running vswitch (name, key, address, session, traffic, drops, MACs), its MAC table and counters.'
        : '$0 [--name IFNAME | --control PATH] [--json]\n\nShow the session, switch address, handshake, RTT and counters of a running vport.',
    )
    .option('control', {
      type: 'string',
      describe: `the daemon's control socket (default ${prog === 'vswitch' ? defaultSwitchControlPath() : defaultPortControlPath('IFNAME')})`,
    })
    .option('json', { type: 'boolean', default: false, describe: 'print the status as JSON' });
  if (prog === 'vport') y.option('name', { type: 'string', describe: 'the vport of this interface', conflicts: 'control' });
  else y.option('network', { type: 'string', describe: 'only this network: its ports, MACs, pairs and counters' }).example('$0 --network lab --json', 'the ports and MACs of network lab, as JSON');
  const argv = (await y
    .parserConfiguration({ 'boolean-negation': false, 'camel-case-expansion': false })
    .strict()
    .fail(cliFail)
    .help()
    .version(false)
    .parseAsync()) as { control?: string; name?: string; network?: string; json: boolean; _: (string | number)[] };
  if (argv._.length > 0) cliFail(`unexpected argument '${argv._[0]}'`, undefined);

  let path: string;
  try {
    path = socketPath(prog, argv);
  } catch (err) {
    cliFail((err as Error).message, undefined);
  }
  let res;
  try {
    res = await controlRequest(path, { cmd: 'status' });
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'ENOTSOCK') {
      const flag = prog === 'vport' ? '--control/--name' : '--control';
      process.stderr.write(`${prog}: no ${prog} is listening on ${path} (is it running? is ${flag} the same?)\n`);
      process.exit(EXIT.failure);
    }
    if (code === 'EACCES' || code === 'EPERM') {
      fatal(prog, new EtherlinkError(code, `cannot use ${path}: permission denied (only the user running ${prog} may: run status as that user)`));
    }
    fatal(prog, err);
  }
  if (!res.ok) fatal(prog, new EtherlinkError(res.code ?? 'EIO', `${path}: ${res.error}`));
  let status = res['status'];
  if (argv.network !== undefined) {
    const r = status as SwitchStatusReport;
    status = networkReport(r, argv.network);
    if (status === undefined) cliFail(`--network ${argv.network}: this switch has no such network (it has ${r.networks.map((n) => n.name).join(', ')})`, undefined);
  }
  if (argv.json) process.stdout.write(JSON.stringify(status, null, 2) + '\n');
  else process.stdout.write((prog === 'vswitch' ? formatSwitchReport(status as SwitchStatusReport) : formatPortReport(status as PortStatusReport)) + '\n');
  process.exit(EXIT.ok);
}
