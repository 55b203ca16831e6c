#!/usr/bin/env node
// etherlink: helper commands around the virtual LAN (file transfer check).
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { formatProgress, receiveFile, sendFile, type ProgressFn } from '../lib/transfer.js';
import { cliFail, parsePortNumber } from '../lib/cli.js';

function progress(): ProgressFn | undefined {
  if (!process.stderr.isTTY) return undefined;
  return (bytes, total) => process.stderr.write(`\r${formatProgress(bytes, total)}`);
}

function endProgress(): void {
  if (process.stderr.isTTY) process.stderr.write('\n');
}

await yargs(hideBin(process.argv))
  .scriptName('etherlink')
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
  .demandCommand(1, 'name a command: transfer')
  // '--no-foo' would otherwise be reported as an unknown 'foo'.
  .parserConfiguration({ 'boolean-negation': false, 'camel-case-expansion': false })
  .strict()
  .fail(cliFail)
  .help()
  .parseAsync();
