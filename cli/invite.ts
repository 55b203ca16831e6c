// `vswitch invite` (and `etherlink invite`): ask the running switch, over its
// control socket, for an invite, and print it as the last line. The daemon's
// side (`inviteCommand`) makes it and formats the URL.
import { networkInterfaces } from 'node:os';
import yargs from 'yargs';
import { controlRequest, defaultSwitchControlPath, type ControlCommand, type ControlRequest, type ControlResponse } from '../lib/daemon/control.js';
import { DEFAULT_INVITE_EXPIRY_S, MAX_INVITE_EXPIRY_S, checkInviteRequest, formatInviteUrl, summarizeInvite, type InviteSummary } from '../lib/daemon/invites.js';
import type { SwitchServer } from '../lib/daemon/switch-server.js';
import { EtherlinkError } from '../lib/core/errors.js';
import { cliFail, EXIT, fatal, parseListen, UsageError } from './args.js';

const UNITS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600, d: 86400 };

/** `90`, `90s`, `30m`, `1h`, `7d` -> seconds. Throws a UsageError naming `flag`. */
export function parseDuration(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)([smhd]?)$/.exec(text.trim());
  if (m === null) throw new UsageError(`${flag} '${text}': give a duration such as 90s, 30m, 1h or 7d`);
  return Number(m[1]) * UNITS[m[2] || 's']!;
}

/** Where members reach a switch listening on `address`: itself, or for a wildcard this host's first non-loopback address. */
export function reachableAddress(address: string): { host: string; guessed: boolean } {
  if (address !== '::' && address !== '0.0.0.0' && address !== '') return { host: address, guessed: false };
  const all = Object.values(networkInterfaces()).flat();
  const v4 = all.find((a) => a !== undefined && a.family === 'IPv4' && !a.internal);
  const v6 = all.find((a) => a !== undefined && a.family === 'IPv6' && !a.internal && !a.address.startsWith('fe80'));
  return { host: v4?.address ?? v6?.address ?? '127.0.0.1', guessed: true };
}

/** The switch's 'invite' control command: { name?, address?, expiresS?, uses?, network? } -> { url, id, network, expires, uses }. */
export function inviteCommand(server: SwitchServer, listen: { address: string; port: number }): ControlCommand {
  return (req) => {
    const str = (k: string): string | undefined => {
      const v = req[k];
      if (v === undefined) return undefined;
      if (typeof v !== 'string') throw new EtherlinkError('EINVAL', `"${k}" must be a string`);
      return v;
    };
    const num = (k: string): number | undefined => {
      const v = req[k];
      if (v === undefined) return undefined;
      if (typeof v !== 'number') throw new EtherlinkError('EINVAL', `"${k}" must be a number`);
      return v;
    };
    const address = str('address');
    let host: string;
    let port: number;
    let guessed = false;
    if (address !== undefined) {
      const at = parseListen(address);
      host = at.address;
      port = at.port === 0 ? listen.port : at.port;
    } else {
      ({ host, guessed } = reachableAddress(listen.address));
      port = listen.port;
    }
    const name = str('name');
    const network = str('network');
    const expiresS = num('expiresS');
    const uses = num('uses');
    const made = server.createInvite({
      ...(name !== undefined ? { name } : {}),
      ...(network !== undefined ? { network } : {}),
      ...(expiresS !== undefined ? { expiresS } : {}),
      ...(uses !== undefined ? { uses } : {}),
    });
    const url = formatInviteUrl({ host, port, switchPublicKey: Buffer.from(server.publicKey, 'base64'), id: made.id, secret: made.secret });
    return {
      url,
      id: made.record.id,
      network: made.record.network,
      ...(made.record.name !== undefined ? { name: made.record.name } : {}),
      expires: new Date(made.record.expires).toISOString(),
      uses: made.record.uses,
      address: `${host.includes(':') ? `[${host}]` : host}:${port}`,
      guessed,
    };
  };
}

/** The switch's 'invites' control command: {} -> { invites: InviteSummary[] } (no secrets). */
export function invitesCommand(server: SwitchServer): ControlCommand {
  return () => {
    const now = Date.now();
    return { invites: server.invites().map((r) => summarizeInvite(r, now)) };
  };
}

/** The switch's 'invite-revoke' control command: { id } -> { revoked: InviteSummary }; ENOENT if no network holds it. */
export function revokeInviteCommand(server: SwitchServer): ControlCommand {
  return (req) => {
    const id = req['id'];
    if (typeof id !== 'string' || !INVITE_ID.test(id)) throw new EtherlinkError('EINVAL', `"id" must be an invite id of 16 hex digits, got ${JSON.stringify(id)}`);
    const record = server.revokeInvite(id);
    if (record === undefined) throw new EtherlinkError('ENOENT', `no invite ${id} here (vswitch invite --list shows them)`);
    if (record === 'already') throw new EtherlinkError('EALREADY', `invite ${id} was revoked already`);
    return { revoked: summarizeInvite(record, Date.now()) };
  };
}

/** An invite id as the switch prints it. */
const INVITE_ID = /^[0-9a-f]{16}$/;

/** The creation flags, which --list and --revoke do not take. */
const CREATE_FLAGS = ['name', 'address', 'expires', 'uses', 'network'] as const;

function formatInvites(list: readonly InviteSummary[]): string {
  if (list.length === 0) return 'no invites (open, or used, expired or revoked within the last day)\n';
  const rows = list.map((i) => [i.id, i.network, i.name ?? '-', i.state, `${i.used}/${i.uses}`, i.expires]);
  const head = ['ID', 'NETWORK', 'NAME', 'STATE', 'USED', 'EXPIRES'];
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  return [head, ...rows].map((r) => r.map((v, c) => (c === r.length - 1 ? v : v.padEnd(widths[c]!))).join('  ')).join('\n') + '\n';
}

/** One request to the switch's control socket; on any failure, say what and exit. */
async function ask(prog: string, path: string, req: ControlRequest): Promise<Record<string, unknown>> {
  let res: ControlResponse;
  try {
    res = await controlRequest(path, req);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'ENOTSOCK') {
      process.stderr.write(`${prog} invite: no vswitch is listening on ${path} (is it running? is --control the same?)\n`);
      process.exit(EXIT.failure);
    }
    fatal(`${prog} invite`, err);
  }
  if (!res.ok) {
    if (res.code === 'ENOTSUP' && res.error.startsWith('unknown command')) {
      const what = req.cmd === 'invite' ? 'makes no invites' : `has no '${req.cmd}' command`;
      fatal(`${prog} invite`, new EtherlinkError('ENOTSUP', `${path}: this vswitch ${what} (an older version, or --insecure)${req.cmd === 'invite' ? ': add the key to its allow file instead' : ''}`));
    }
    fatal(`${prog} invite`, new EtherlinkError(res.code ?? 'EIO', res.error));
  }
  const { ok: _ok, ...rest } = res;
  return rest;
}

/** `invite --list` / `invite --revoke ID`: ask, print, exit. */
async function listOrRevoke(prog: string, path: string, revoke: string | undefined, json: boolean): Promise<never> {
  const res = await ask(prog, path, revoke === undefined ? { cmd: 'invites' } : { cmd: 'invite-revoke', id: revoke });
  if (json) {
    process.stdout.write(JSON.stringify(res, null, 2) + '\n');
    process.exit(EXIT.ok);
  }
  if (revoke === undefined) {
    process.stdout.write(formatInvites(res['invites'] as InviteSummary[]));
  } else {
    const r = res['revoked'] as InviteSummary;
    process.stdout.write(`invite ${r.id} for network ${r.network} revoked (it had been used ${r.used} of ${r.uses} times; hosts that joined with it stay in the allow file)\n`);
  }
  process.exit(EXIT.ok);
}

/** Parse `args` (after the word 'invite'), ask the switch, print, exit. */
export async function runInviteCommand(prog: 'vswitch' | 'etherlink', args: string[]): Promise<never> {
  const argv = (await yargs(args)
    .scriptName(`${prog} invite`)
    .usage(
      '$0 [--name NAME] [--address HOST:PORT] [--expires 1h] [--uses 1]\n$0 --list\n$0 --revoke ID\n\nAsk the running vswitch for an invite: a one-time secret that lets one new host join with `vport join URL`. The switch adds the host\'s key to its allow file under NAME when it joins. Prints the URL as the last line. --list shows the invites the switch holds (never their secrets), --revoke voids one.',
    )
    .option('name', { type: 'string', describe: "the name the new port gets in the allow file (default: the name the port announces, HOSTNAME/IFNAME)" })
    .option('address', { type: 'string', describe: 'HOST:PORT members reach the switch at (default: its listen address; for a wildcard listen, this host\'s first non-loopback address)' })
    .option('expires', { type: 'string', default: '1h', describe: `how long the invite is good for: 90s, 30m, 1h, 7d (at most ${MAX_INVITE_EXPIRY_S / 86400}d)` })
    .option('uses', { type: 'number', default: 1, describe: 'how many hosts may join with it' })
    .option('network', { type: 'string', describe: 'the network the host joins (default: the first)' })
    .option('control', { type: 'string', describe: `the switch's control socket (default ${defaultSwitchControlPath()})` })
    .option('list', { type: 'boolean', default: false, describe: 'list the invites the switch holds: open ones, and used or expired ones for a day' })
    .option('revoke', { type: 'string', describe: 'void invite ID (as --list shows it): its URL admits nobody any more; hosts that joined with it stay' })
    .option('json', { type: 'boolean', default: false, describe: 'print the invite (or the list) as JSON' })
    .example('$0 --name laptop --address vpn.example.net:9999', 'then on the laptop: vport join etherlink://vpn.example.net:9999/... --ip 10.99.0.9/24')
    .example('$0 --expires 10m --uses 3', 'three hosts, within ten minutes')
    .example('$0 --list', 'what invites are out, and which were used')
    .example('$0 --revoke 3f2a9c0d4b5e6f70', 'void one before anybody uses it')
    .parserConfiguration({ 'boolean-negation': false, 'camel-case-expansion': false })
    .strict()
    .fail(cliFail)
    .help()
    .version(false)
    .parseAsync()) as { name?: string; address?: string; expires: string; uses: number; network?: string; control?: string; list: boolean; revoke?: string; json: boolean; _: (string | number)[] };
  if (argv._.length > 0) cliFail(`unexpected argument '${argv._[0]}'`, undefined);
  if (argv.list || argv.revoke !== undefined) {
    const what = argv.list ? '--list' : '--revoke';
    if (argv.list && argv.revoke !== undefined) cliFail('--list and --revoke go one at a time: give one of them', undefined);
    const given = CREATE_FLAGS.filter((f) => args.some((a) => a === `--${f}` || a.startsWith(`--${f}=`)));
    if (given.length > 0) cliFail(`${what} takes no --${given[0]}: that flag is for making an invite`, undefined);
    if (argv.revoke !== undefined && !INVITE_ID.test(argv.revoke)) cliFail(`--revoke '${argv.revoke}': give an invite id of 16 hex digits, as ${prog} invite --list shows it`, undefined);
    await listOrRevoke(prog, argv.control ?? defaultSwitchControlPath(), argv.revoke, argv.json);
  }
  let expiresS = DEFAULT_INVITE_EXPIRY_S;
  try {
    expiresS = parseDuration(argv.expires, '--expires');
    if (argv.address !== undefined) parseListen(argv.address);
    checkInviteRequest({ network: 'x', expiresS, uses: argv.uses, ...(argv.name !== undefined ? { name: argv.name } : {}) });
  } catch (err) {
    cliFail((err as Error).message.replace(/^expires: /, '--expires: ').replace(/^uses: /, '--uses: ').replace(/^name /, '--name ').replace(/--listen/g, '--address'), undefined);
  }
  const res = await ask(prog, argv.control ?? defaultSwitchControlPath(), {
    cmd: 'invite',
    expiresS,
    uses: argv.uses,
    ...(argv.name !== undefined ? { name: argv.name } : {}),
    ...(argv.address !== undefined ? { address: argv.address } : {}),
    ...(argv.network !== undefined ? { network: argv.network } : {}),
  });
  if (argv.json) {
    process.stdout.write(JSON.stringify(res, null, 2) + '\n');
    process.exit(EXIT.ok);
  }
  if (res['guessed'] === true) process.stderr.write(`${prog} invite: the switch listens on every address; the invite names ${String(res['address'])}: give --address HOST:PORT if members reach it elsewhere\n`);
  process.stdout.write(
    `invite ${String(res['id'])} for network ${String(res['network'])}${res['name'] !== undefined ? `, name ${String(res['name'])}` : ''}: ${String(res['uses'])} use${res['uses'] === 1 ? '' : 's'}, until ${String(res['expires'])}\n` +
      'on the new host: vport join URL --ip ADDR/PREFIX (it makes its own key; the secret never leaves this URL)\n' +
      `${String(res['url'])}\n`,
  );
  process.exit(EXIT.ok);
}
