#!/usr/bin/env node
// etherlink: helper commands around the virtual LAN (file transfer check).
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { formatProgress, receiveFile, sendFile, type ProgressFn } from '../cli/transfer.js';
import { cliFail, fatal, parsePortNumber } from '../cli/args.js';
import { randomBytes } from 'node:crypto';
import { encodeKey, generateKeyPair, publicKeyOf, writeKeyFile } from '../lib/crypto/keys.js';
import { loadPrivateKey } from '../cli/identity.js';
import { runInviteCommand } from '../cli/invite.js';

// `etherlink invite ...` is `vswitch invite ...`: ask the running switch for an invite.
if (process.argv[2] === 'invite') await runInviteCommand('etherlink', hideBin(process.argv).slice(1));

function progress(): ProgressFn | undefined {
  if (!process.stderr.isTTY) return undefined;
  return (bytes, total) => process.stderr.write(`\r${formatProgress(bytes, total)}`);
}

function endProgress(): void {
  if (process.stderr.isTTY) process.stderr.write('\n');
}

try {
  await yargs(hideBin(process.argv))
  .scriptName('etherlink')
  .command('invite', 'ask the running vswitch for a one-time invite a new host joins with (vport join URL); etherlink invite --help', () => {}, () => {})
  .command(
    'transfer <action> <host> <port> <file>',
    'Move a file over TCP across the virtual LAN and print its byte count and SHA-256 on both ends',
    (y) =>
      y
        .positional('action', { choices: ['send', 'receive'] as const, demandOption: true, describe: 'send FILE to HOST, or receive into FILE listening on HOST' })
        .positional('host', { type: 'string', demandOption: true, describe: 'receive: address to listen on; send: receiver address' })
        .positional('port', { type: 'string', demandOption: true, describe: 'TCP port' })
        .positional('file', { type: 'string', demandOption: true, describe: 'file to send, or where to write what arrives' })
        .option('timeout', { type: 'number', default: 60, describe: 'seconds without data before giving up' })
        .example('$0 transfer receive 0.0.0.0 5001 /tmp/out.bin', 'wait for one file on port 5001')
        .example('$0 transfer send 10.0.0.2 5001 ./big.iso', 'send a file to that receiver'),
    async (argv) => {
      const port = parsePortNumber(argv.port, 'port');
      if (argv.action === 'receive') {
        const r = await receiveFile(argv.host, port, argv.file, {
          onListening: () => console.log(`listening on ${argv.host}:${port}`),
          onProgress: progress(),
          timeoutMs: argv.timeout * 1000,
        });
        endProgress();
        console.log(`received ${r.bytes} bytes sha256 ${r.sha256} in ${r.seconds.toFixed(2)} s`);
      } else {
        const r = await sendFile(argv.host, port, argv.file, { onProgress: progress() });
        endProgress();
        console.log(`sent ${r.bytes} bytes sha256 ${r.sha256} in ${r.seconds.toFixed(2)} s`);
      }
    },
  )
  .example('$0 transfer receive 10.99.0.3 5001 /tmp/out.bin', 'on one host of the virtual LAN: wait for one file')
  .example('$0 transfer send 10.99.0.3 5001 ./big.iso', 'on another: send it, then compare the SHA-256 both print')
  .command(
    'keygen',
    'Make an X25519 private key file (mode 0600) and print its public key',
    (y) =>
      y
        .option('out', { type: 'string', describe: 'where to write the private key (default: print it to stdout)' })
        .option('force', { type: 'boolean', default: false, describe: 'overwrite an existing file' })
        .example('$0 keygen --out /etc/etherlink/switch.key', 'prints the public key to give to the other side'),
    (argv) => {
      const pair = generateKeyPair();
      if (argv.out === undefined) {
        process.stdout.write(`${encodeKey(pair.privateKey)}\n`);
        process.stderr.write(`public key: ${encodeKey(pair.publicKey)}\n`);
        return;
      }
      writeKeyFile(argv.out, pair.privateKey, { overwrite: argv.force });
      process.stdout.write(`${encodeKey(pair.publicKey)}\n`);
    },
  )
  .command(
    'pubkey <file>',
    'Print the public key of a private key file',
    (y) => y.positional('file', { type: 'string', demandOption: true, describe: 'private key file' }).example('$0 pubkey /etc/etherlink/switch.key', 'the value for vport --switch-key'),
    (argv) => {
      const k = loadPrivateKey(argv.file);
      for (const w of k.warnings) process.stderr.write(`etherlink: warning: ${w}\n`);
      process.stdout.write(`${encodeKey(publicKeyOf(k.value))}\n`);
    },
  )
  .command(
    'genpsk',
    'Make a pre-shared key file (mode 0600) for --psk on the switch and every port, or a token file for --web-token',
    (y) =>
      y
        .option('out', { type: 'string', demandOption: true, describe: 'where to write it' })
        .option('force', { type: 'boolean', default: false, describe: 'overwrite' })
        .example('$0 genpsk --out /etc/etherlink/psk', 'the same file on the switch and every port: --psk /etc/etherlink/psk')
        .example('$0 genpsk --out /etc/etherlink/web.token', 'a token for vswitch --web 0.0.0.0:8080 --web-token /etc/etherlink/web.token (open http://HOST:8080/?token=$(cat /etc/etherlink/web.token) once)'),
    (argv) => {
      writeKeyFile(argv.out, randomBytes(32), { overwrite: argv.force });
      process.stdout.write(`wrote ${argv.out}\n`);
    },
  )
  .demandCommand(1, 'name a command: keygen, pubkey, genpsk, invite or transfer')
  // '--no-foo' would otherwise be reported as an unknown 'foo'.
  .parserConfiguration({ 'boolean-negation': false, 'camel-case-expansion': false })
  .strict()
  .fail(cliFail)
  .help()
  .parseAsync();
} catch (err) {
  fatal('etherlink', err);
}
