// Loading the key material the CLIs are given: private keys, the switch's
// allow file, PSKs — with the warnings and errors a user can act on.
import { readFileSync } from 'node:fs';
import { decodeKey, parseAllowList, readKeyFile, readPsk, type AllowEntry } from '../lib/crypto/keys.js';
import { UsageError } from './args.js';
import { EtherlinkError } from '../lib/core/errors.js';

export const KEYGEN_HINT = "make one with 'etherlink keygen --out FILE' and pass --key FILE (or run both ends with --insecure: plaintext, anyone can join)";

export interface Loaded<T> {
  value: T;
  warnings: string[];
}

function readOrExplain<T>(what: string, path: string, read: () => T): T {
  try {
    return read();
  } catch (err) {
    const e = err as { code?: string; message: string };
    if (e.code === 'ENOENT') throw new EtherlinkError('ENOENT', `${what} ${path} does not exist: ${what === 'key file' ? KEYGEN_HINT : 'check the path'}`);
    if (e.code === 'EACCES') throw new EtherlinkError('EACCES', `${what} ${path} is not readable by this user: fix its owner, or run as its owner`);
    throw err;
  }
}

export function loadPrivateKey(path: string): Loaded<Buffer> {
  const k = readOrExplain('key file', path, () => readKeyFile(path));
  return { value: k.privateKey, warnings: k.warning ? [k.warning] : [] };
}

export function loadPsk(path: string | undefined): Loaded<Buffer | undefined> {
  if (path === undefined) return { value: undefined, warnings: [] };
  const p = readOrExplain('PSK file', path, () => readPsk(path));
  return { value: p.psk, warnings: p.warning ? [p.warning] : [] };
}

export function loadAllowList(path: string): AllowEntry[] {
  const text = readOrExplain('allow file', path, () => readFileSync(path, 'utf8'));
  return parseAllowList(text, path);
}

/** A public key given on the command line (base64, 44 characters). */
export function parsePublicKeyFlag(text: string, flag: string): Buffer {
  try {
    return decodeKey(text.trim(), flag);
  } catch (err) {
    throw new UsageError(`${flag}: ${(err as Error).message} (get it with 'etherlink pubkey KEYFILE' on the switch)`);
  }
}

/**
 * A PEM file given by `flag` (certificates, a key): its bytes, or a usage
 * error that names the flag. `marker` is what it must hold
 * ("-----BEGIN CERTIFICATE-----" for CAs; any "-----BEGIN " by default).
 */
export function readPemFlag(file: string, flag: string, marker = '-----BEGIN '): Buffer {
  let pem: Buffer;
  try {
    pem = readFileSync(file);
  } catch (err) {
    throw new UsageError(`${flag} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}: give a readable PEM file`);
  }
  if (!pem.includes(marker)) throw new UsageError(`${flag} ${file} is not what it should be: no ${marker.trim()} line (PEM)`);
  return pem;
}
