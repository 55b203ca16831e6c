// Shared plumbing of the bundled CLIs: argument checks that name the flag and
// the fix, and one failure path that turns errors into messages and exit codes.
import { MAX_PCAP_FILES, type PcapFormat, type PcapOptions } from '../lib/daemon/pcap.js';
import { EtherlinkError } from '../lib/core/errors.js';
import { parseVtepAddress, VNI_MAX, type VtepAddress } from '../lib/daemon/vxlan.js';

/** Exit codes of every CLI. */
export const EXIT = {
  ok: 0,
  failure: 1, // runtime failure (port in use, name resolution, ...)
  usage: 2, // bad flag or argument
  privilege: 4, // missing CAP_NET_ADMIN or similar
} as const;

/** A bad flag or argument: exit code 2, and the message names the flag. */
export class UsageError extends EtherlinkError {
  constructor(message: string) {
    super('ERR_USAGE', message);
    this.name = 'UsageError';
  }
}

/** A TCP/UDP port number from a CLI argument, or a UsageError naming the argument. */
export function parsePortNumber(value: unknown, flag: string): number {
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535 || String(value).trim() === '') {
    throw new UsageError(`${flag} must be a port number 0..65535 (got '${String(value)}')`);
  }
  return n;
}

/** A positive integer option, or a UsageError that names the flag. */
export function parsePositive(value: unknown, flag: string, { min = 1, max = Number.MAX_SAFE_INTEGER } = {}): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < min || n > max) {
    throw new UsageError(`--${flag} must be a number from ${min} to ${max} (got '${String(value)}')`);
  }
  return n;
}

function exitCodeFor(err: { code?: unknown }): number {
  if (err.code === 'ERR_USAGE' || err.code === 'ERR_INVALID_ARG_VALUE' || err.code === 'ERR_INVALID_MAC' || err.code === 'ERR_INVALID_ADDRESS') {
    return EXIT.usage;
  }
  if (err.code === 'EPERM' || err.code === 'EACCES') return EXIT.privilege;
  return EXIT.failure;
}

/** Print an error as "prog: message [code]" and exit with the matching code. */
export function fatal(prog: string, err: unknown): never {
  const e = err as { message?: string; code?: unknown };
  const code = typeof e.code === 'string' ? ` [${e.code}]` : '';
  process.stderr.write(`${prog}: ${e.message ?? String(err)}${code}\n`);
  process.exit(exitCodeFor(e));
}

/** yargs .fail() handler: usage errors name the flag and point at --help. */
export function cliFail(msg: string | null | undefined, err: Error | undefined): never {
  const prog = process.argv[1]?.split('/').pop()?.replace(/\.js$/, '') ?? 'etherlink';
  if (err) fatal(prog, err);
  process.stderr.write(`${prog}: ${msg ?? 'bad arguments'}\nRun '${prog} --help' for usage and examples.\n`);
  process.exit(EXIT.usage);
}

/** "ADDR:PORT", "[v6]:PORT" or a bare port (all addresses). */
export function parseListen(text: string, flag = '--listen'): { address: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:]+):(\d+)$/.exec(text);
  if (m) return { address: m[1]!, port: parsePortNumber(m[2], flag) };
  if (/^\d+$/.test(text)) return { address: '::', port: parsePortNumber(text, flag) };
  throw new UsageError(`${flag} '${text}' must be ADDR:PORT, e.g. 0.0.0.0:9999 or [::]:9999`);
}

/** --vni: 1..16777215, as a UsageError naming the flag. */
export function checkVniFlag(value: unknown): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > VNI_MAX) throw new UsageError(`--vni must be an integer from 1 to ${VNI_MAX} (the VXLAN network identifier; got '${String(value)}')`);
  return n;
}

/** --vtep IP[:PORT], as a UsageError naming the flag. */
export function parseVtepFlag(text: string): VtepAddress {
  try {
    return parseVtepAddress(text);
  } catch (err) {
    throw new UsageError(`--vtep: ${(err as Error).message}`);
  }
}

/** "ADDR:PORT" or "[v6]:PORT" for --metrics; the port is required. */
export function parseMetricsAddress(text: string): { address: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:[\]]+):(\d+)$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !Number.isInteger(port) || port > 65535) {
    throw new UsageError(`--metrics '${text}' must be ADDR:PORT, e.g. 127.0.0.1:9810 or [::1]:9810`);
  }
  return { address: m[1]!, port };
}

/** The capture flags shared by vswitch and vport. */
export interface CaptureFlags {
  pcap?: string | undefined;
  'pcap-format'?: PcapFormat;
  'pcap-max-mb': number;
  'pcap-files': number;
}

/** PcapOptions from --pcap-format, --pcap-max-mb (decimal MB, like tcpdump -C) and --pcap-files; throws a UsageError naming the flag. */
export function captureOptionsFromFlags(flags: CaptureFlags): PcapOptions {
  const mb = parsePositive(flags['pcap-max-mb'], 'pcap-max-mb', { min: 0.1, max: 1_000_000 });
  const files = parsePositive(flags['pcap-files'], 'pcap-files', { min: 1, max: MAX_PCAP_FILES });
  if (!Number.isInteger(files)) throw new UsageError(`--pcap-files must be a whole number of files (got '${files}')`);
  return { maxBytes: Math.round(mb * 1_000_000), files, ...(flags['pcap-format'] !== undefined ? { format: flags['pcap-format'] } : {}) };
}
