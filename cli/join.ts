// `vport join URL [vport flags]`: join a switch with nothing but the invite
// `vswitch invite` printed. Makes a key if the host has none, and turns the
// URL into the switch address and key the rest of vport runs with; the
// invite's proof rides in the handshake (PortClientOptions.invite).
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import yargs from 'yargs';
import { encodeKey, generateKeyPair, writeKeyFile } from '../lib/crypto/keys.js';
import { parseInviteUrl } from '../lib/daemon/invites.js';
import { cliFail, EXIT } from './args.js';

/** Where `vport join` keeps the port's key when --key is not given. */
export const DEFAULT_JOIN_KEY = '/etc/etherlink/vport.key';

/** What `vport join` hands to the rest of vport. */
export interface JoinPlan {
  /** vport's own arguments: HOST PORT --switch-key KEY --key FILE and the flags given after the URL. */
  args: string[];
  invite: { id: Buffer; secret: Buffer };
  /** --config FILE: where to write the settings to restart with, without the invite. */
  configOut?: string;
  keyFile: string;
  /** The key was made now (its public key, base64), else undefined. */
  madeKey?: string;
}

/** The value of `--flag V` or `--flag=V` in `args`, and `args` without it. */
function takeFlag(args: string[], flag: string): { value: string | undefined; rest: string[] } {
  const rest: string[] = [];
  let value: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === flag) {
      value = args[++i];
      if (value === undefined) cliFail(`${flag} needs a value`, undefined);
    } else if (a.startsWith(`${flag}=`)) value = a.slice(flag.length + 1);
    else rest.push(a);
  }
  return { value, rest };
}

/** Read `vport join URL ...` (args after 'join'); exits with usage errors or after --help. */
export function prepareJoin(args: string[]): JoinPlan {
  if (args.length === 0 || args[0] === '--help' || args[0] === '-h') {
    yargs([])
      .scriptName('vport join')
      .usage(
        "$0 URL [--key FILE] [--config FILE] [vport flags: --name, --ip, --mtu, ...]\n\nJoin the switch that printed URL (vswitch invite): makes a key if FILE does not exist, proves the invite inside the encrypted handshake, and the switch adds this key to its allow file. Then it runs as any vport (vport --help for its flags).",
      )
      .example(`$0 etherlink://vpn.example.net:9999/AQ... --name etl0 --ip 10.99.0.9/24 --config /etc/etherlink/vport.json`, 'join, and save what it takes to restart without the invite: vport --config /etc/etherlink/vport.json')
      .epilogue(`--key FILE: this port's private key (default ${DEFAULT_JOIN_KEY}; made, mode 0600, if missing). --config FILE: write the settings there (the invite is spent once used: restart with vport --config FILE).`)
      .showHelp((s) => process.stdout.write(`${s}\n`));
    process.exit(args.length === 0 ? EXIT.usage : EXIT.ok);
  }
  const url = args[0]!;
  if (url.startsWith('-')) cliFail(`vport join URL: the first argument must be the etherlink:// URL 'vswitch invite' printed, got '${url}'`, undefined);
  let token;
  try {
    token = parseInviteUrl(url);
  } catch (err) {
    cliFail((err as Error).message, undefined);
  }
  let rest = args.slice(1);
  for (const f of ['--switch-key', '--insecure']) {
    if (rest.some((a) => a === f || a.startsWith(`${f}=`))) cliFail(`vport join takes the switch's key from the invite: drop ${f}`, undefined);
  }
  const key = takeFlag(rest, '--key');
  rest = key.rest;
  const config = takeFlag(rest, '--config');
  rest = config.rest;
  const keyFile = key.value ?? DEFAULT_JOIN_KEY;
  let madeKey: string | undefined;
  if (!existsSync(keyFile)) {
    const pair = generateKeyPair();
    mkdirSync(dirname(keyFile), { recursive: true, mode: 0o700 });
    writeKeyFile(keyFile, pair.privateKey);
    madeKey = encodeKey(pair.publicKey);
  }
  return {
    args: [token.host, String(token.port), '--switch-key', encodeKey(token.switchPublicKey), '--key', keyFile, ...rest],
    invite: { id: token.id, secret: token.secret },
    ...(config.value !== undefined ? { configOut: config.value } : {}),
    keyFile,
    ...(madeKey !== undefined ? { madeKey } : {}),
  };
}

/** The settings `vport --config FILE` restarts with: the switch, the keys and every flag given. */
export function writeJoinConfig(file: string, settings: Record<string, unknown>): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(settings, null, 2) + '\n', { mode: 0o600 });
}
