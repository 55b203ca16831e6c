// Static X25519 identities and pre-shared keys: generation, WireGuard-style base64
// text (44 characters), key files with safe permissions, and the allow-list format.
import { createHash, createPrivateKey, createPublicKey, diffieHellman, randomBytes, type KeyObject } from 'node:crypto';
import { closeSync, constants as fsConstants, fchmodSync, fstatSync, openSync, readFileSync, writeSync } from 'node:fs';
import { EtherlinkError } from '../core/errors.js';
import { KEY_SIZE } from './constants.js';
import { parseVlanOptions, type VlanMode } from '../switch/vlan.js';

/** 32 bytes in standard base64 always take 44 characters, the last one '='. */
export const KEY_BASE64_LENGTH = 44;
/** Permission bits a key file may have: owner read/write only. */
export const KEY_FILE_MODE = 0o600;
/** Longest peer name accepted in an allow list (it is for logs only). */
export const ALLOW_NAME_MAX_LENGTH = 64;

// X25519's base point, u = 9 (RFC 7748 section 4.1): a public key is X25519(private, 9).
const BASE_POINT_U = Buffer.from('0900000000000000000000000000000000000000000000000000000000000000', 'hex').toString('base64url');
const BASE64_KEY = /^[A-Za-z0-9+/]{43}=$/;
// Any access by group or others; "readable" is the part worth naming.
const GROUP_OTHER_READ = 0o044;
const GROUP_OTHER_ANY = 0o077;

/** A key that could not be parsed or used: ERR_INVALID_KEY. */
function keyError(message: string): EtherlinkError {
  return new EtherlinkError('ERR_INVALID_KEY', message);
}

/** An allow list that could not be parsed: the message names the line, `line` holds it. */
export class AllowListError extends EtherlinkError {
  constructor(
    code: 'ERR_INVALID_KEY' | 'ERR_INVALID_ALLOW_LIST',
    message: string,
    /** 1-based line of the allow file. */
    readonly line: number,
  ) {
    super(code, message);
    this.name = 'AllowListError';
  }
}

/** An X25519 key pair, raw 32 bytes each. */
export interface KeyPair {
  /** Raw 32-byte X25519 scalar. */
  privateKey: Buffer;
  /** Raw 32-byte X25519 public key (u-coordinate). */
  publicKey: Buffer;
}

/** A fresh static identity, its scalar clamped as `wg genkey` does. */
export function generateKeyPair(): KeyPair {
  const { privateKey, publicKey } = generateEphemeral();
  return { privateKey, publicKey };
}

/**
 * A fresh key pair with its KeyObject, for one handshake (not cached: it dies
 * with the handshake). Not generateKeyPairSync: on Node 20, exporting a key it
 * made can deadlock when a garbage collection during the export destroys the
 * generating job, which takes the key's lock the export holds (the scale bench's
 * 1000-port join froze this way; test/unit/keys.test.ts keeps a loop that
 * catches it). Random bytes are a private key as they are (RFC 7748 section 5).
 */
export function generateEphemeral(): KeyPair & { key: KeyObject } {
  const privateKey = randomBytes(KEY_SIZE);
  privateKey[0]! &= 248;
  privateKey[31]! &= 127;
  privateKey[31]! |= 64;
  const key = importPrivate(privateKey);
  return { privateKey, publicKey: publicOf(key), key };
}

/**
 * A private KeyObject from 32 raw bytes. node:crypto has no raw import for
 * X25519; a JWK import is ten times faster than the PKCS#8 DER one (~1 ms).
 * Node builds a private key from `d` alone and checks `x` only for form, so
 * the base point stands in for the public half (publicOf computes the real one).
 */
function importPrivate(privateKey: Uint8Array): KeyObject {
  const d = Buffer.from(privateKey.buffer, privateKey.byteOffset, privateKey.byteLength).toString('base64url');
  return createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d, x: BASE_POINT_U }, format: 'jwk' });
}

let basePoint: KeyObject | undefined;

/** The public key of a private KeyObject: X25519(private, 9), one scalar multiplication. */
function publicOf(key: KeyObject): Buffer {
  basePoint ??= createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: BASE_POINT_U }, format: 'jwk' });
  return diffieHellman({ privateKey: key, publicKey: basePoint });
}

// Static keys (the few this process holds: one per daemon, one per port of a
// load generator) are imported once and kept, by a hash of the key; nothing
// else is ever cached.
const STATIC_KEYS_MAX = 4096;
const staticKeys = new Map<string, { key: KeyObject; publicKey: Buffer }>();

function importStatic(privateKey: Uint8Array): { key: KeyObject; publicKey: Buffer } {
  checkRawKey(privateKey, 'private key');
  const id = createHash('sha256').update(privateKey).digest('hex');
  let e = staticKeys.get(id);
  if (e === undefined) {
    const key = importPrivate(privateKey);
    e = { key, publicKey: publicOf(key) };
    if (staticKeys.size >= STATIC_KEYS_MAX) staticKeys.delete(staticKeys.keys().next().value!);
    staticKeys.set(id, e);
  }
  return e;
}

/** The public key of a raw 32-byte private key. */
export function publicKeyOf(privateKey: Uint8Array): Buffer {
  return Buffer.from(importStatic(privateKey).publicKey);
}

/** node:crypto KeyObject for a raw private key (for crypto.diffieHellman). */
export function privateKeyObject(privateKey: Uint8Array): KeyObject {
  return importStatic(privateKey).key;
}

/** node:crypto KeyObject for a raw public key (for crypto.diffieHellman). */
export function publicKeyObject(publicKey: Uint8Array): KeyObject {
  checkRawKey(publicKey, 'public key');
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(publicKey.buffer, publicKey.byteOffset, publicKey.byteLength).toString('base64url') }, format: 'jwk' });
}

/** Base64 text of a 32-byte key, exactly as `wg` prints it. */
export function encodeKey(key: Uint8Array): string {
  checkRawKey(key, 'key');
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('base64');
}

/**
 * Parse 44-character base64 text (surrounding whitespace ignored) into 32 bytes.
 * `what` names the key in the error, e.g. "public key on line 3 of allow.txt".
 */
export function decodeKey(text: string, what: string = 'key'): Buffer {
  const t = text.trim();
  if (t.length !== KEY_BASE64_LENGTH) {
    throw keyError(
      `invalid ${what}: expected ${KEY_BASE64_LENGTH} base64 characters (32 bytes, as printed by \`wg genkey\`), got ${t.length}`,
    );
  }
  if (!BASE64_KEY.test(t)) {
    throw keyError(`invalid ${what}: not base64 (only A-Z a-z 0-9 + / and one trailing '=')`);
  }
  const key = Buffer.from(t, 'base64');
  // Non-canonical text (stray low bits in the last character) would decode to the
  // same bytes as another string: refuse it so one key has one spelling.
  if (key.length !== KEY_SIZE || key.toString('base64') !== t) {
    throw keyError(`invalid ${what}: not a canonical base64 encoding of 32 bytes`);
  }
  return key;
}

/** Options of writeKeyFile. */
export interface WriteKeyFileOptions {
  /** Replace an existing file (default false: fail with EEXIST). */
  overwrite?: boolean;
}

/**
 * Write a private key (or PSK) as base64 + newline to a new file created with
 * mode 0600. Refuses to follow a symlink, and by default to replace a file.
 */
export function writeKeyFile(path: string, key: Uint8Array, opts: WriteKeyFileOptions = {}): void {
  const text = encodeKey(key) + '\n';
  const flags =
    fsConstants.O_WRONLY |
    fsConstants.O_CREAT |
    fsConstants.O_NOFOLLOW |
    (opts.overwrite === true ? fsConstants.O_TRUNC : fsConstants.O_EXCL);
  let fd: number;
  try {
    fd = openSync(path, flags, KEY_FILE_MODE);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EEXIST') e.message = `key file ${path} already exists: remove it, or replace it with 'etherlink keygen --force'`;
    throw e;
  }
  try {
    // An existing file keeps its old mode through O_TRUNC, and umask may have
    // narrowed ours: set it explicitly before the secret goes in.
    fchmodSync(fd, KEY_FILE_MODE);
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
}

/** A private key read from a file, its public key, and a warning about its mode if any. */
export interface KeyFile {
  privateKey: Buffer;
  publicKey: Buffer;
  /** Set when group or others may access the file. */
  warning?: string;
}

/** Read a private key file written by writeKeyFile or `wg genkey`. */
export function readKeyFile(path: string): KeyFile {
  const { text, warning } = readSecretFile(path, 'key');
  const privateKey = decodeKey(text, `private key in ${path}`);
  const result: KeyFile = { privateKey, publicKey: publicKeyOf(privateKey) };
  if (warning !== undefined) result.warning = warning;
  return result;
}

/** A pre-shared key read from a file, and a warning about its mode if any. */
export interface PskFile {
  psk: Buffer;
  warning?: string;
}

/** Read a pre-shared key file (`wg genpsk` format: 32 random bytes in base64). */
export function readPsk(path: string): PskFile {
  const { text, warning } = readSecretFile(path, 'pre-shared key');
  const result: PskFile = { psk: decodeKey(text, `pre-shared key in ${path}`) };
  if (warning !== undefined) result.warning = warning;
  return result;
}

function readSecretFile(path: string, what: string): { text: string; warning?: string } {
  const fd = openSync(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
  try {
    const mode = fstatSync(fd).mode & 0o777;
    const text = readFileSync(fd, 'utf8');
    if ((mode & GROUP_OTHER_ANY) === 0) return { text };
    const how = (mode & GROUP_OTHER_READ) !== 0 ? 'readable' : 'writable';
    const octal = mode.toString(8).padStart(4, '0');
    return { text, warning: `${what} file ${path} is ${how} by others (mode ${octal}): chmod 600 ${path}` };
  } finally {
    closeSync(fd);
  }
}

/** One admitted key of an allow list, with its optional name and VLAN mode. */
export interface AllowEntry {
  publicKey: Buffer;
  name?: string;
  /** 1-based line number in the text. */
  line: number;
  /** `vlan=N` (an access port) or `trunk=N,M [pvid=P]`; absent: a transparent port (frames pass with their tags). */
  vlan?: VlanMode;
  /** The network the key joins (a switch with several: SwitchServerOptions.networks); absent: the only one. */
  network?: string;
  /** The file the entry came from, for messages (a key listed in two networks names both). */
  source?: string;
}

/**
 * Parse an allow list: one peer per line as `<base64 public key> [name]
 * [vlan=N | trunk=N,M,... [pvid=P]]`, `#` starts a comment, blank lines are
 * ignored. Duplicate keys are an error, since two names for one key would make
 * logs lie. `file` names the file in errors (and in each entry's `source`).
 */
export function parseAllowList(text: string, file?: string): AllowEntry[] {
  const source = file ?? 'allow list';
  const entries: AllowEntry[] = [];
  const seen = new Map<string, number>();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = i + 1;
    const content = lines[i]!.replace(/#.*$/, '').trim();
    if (content === '') continue;
    const all = content.split(/\s+/);
    // Options (vlan=, trunk=, pvid=) follow the key and the optional name.
    const isOption = (f: string): boolean => /^(vlan|trunk|pvid)=/.test(f);
    const fields = all.filter((f, k) => k === 0 || !isOption(f));
    const options = all.filter((f, k) => k > 0 && isOption(f));
    if (fields.length > 2 || (fields.length === 2 && all.indexOf(fields[1]!) !== 1)) {
      throw new AllowListError('ERR_INVALID_ALLOW_LIST', `${source} line ${line}: expected '<base64 public key> [name] [vlan=N | trunk=N,M [pvid=P]]', got '${content}'`, line);
    }
    let vlan: VlanMode;
    try {
      vlan = parseVlanOptions(options, `${source} line ${line}`);
    } catch (err) {
      throw new AllowListError('ERR_INVALID_ALLOW_LIST', (err as Error).message, line);
    }
    let publicKey: Buffer;
    try {
      publicKey = decodeKey(fields[0]!, `public key on ${source} line ${line}`);
    } catch (err) {
      throw new AllowListError('ERR_INVALID_KEY', (err as Error).message, line);
    }
    if (publicKey.every((b) => b === 0)) {
      throw new AllowListError('ERR_INVALID_KEY', `invalid public key on ${source} line ${line}: all zeros`, line);
    }
    const hex = publicKey.toString('hex');
    const previous = seen.get(hex);
    if (previous !== undefined) {
      throw new AllowListError('ERR_INVALID_ALLOW_LIST', `${source} line ${line}: public key already listed on line ${previous}`, line);
    }
    seen.set(hex, line);
    const entry: AllowEntry = { publicKey, line };
    if (file !== undefined) entry.source = file;
    if (vlan.kind !== 'transparent') entry.vlan = vlan;
    const name = fields[1];
    if (name !== undefined) {
      // eslint-disable-next-line no-control-regex
      if (name.length > ALLOW_NAME_MAX_LENGTH || /[\u0000-\u001f\u007f-\u009f]/.test(name)) {
        throw new AllowListError('ERR_INVALID_ALLOW_LIST', `${source} line ${line}: name must be at most ${ALLOW_NAME_MAX_LENGTH} printable characters`, line);
      }
      entry.name = name;
    }
    entries.push(entry);
  }
  return entries;
}

/** Read and parse an allow file (see parseAllowList); errors name the file and line. */
export function readAllowFile(path: string): AllowEntry[] {
  return parseAllowList(readFileSync(path, 'utf8'), path);
}

/** 32 random bytes: a pre-shared key for `psk` options (`etherlink genpsk` writes one to a file). */
export function generatePsk(): Buffer {
  return randomBytes(KEY_SIZE);
}

/** A key option given as 32 bytes or as base64 text: the bytes, or ERR_INVALID_KEY naming `what`. */
export function keyFrom(value: Uint8Array | string, what: string): Buffer {
  if (typeof value === 'string') return decodeKey(value, what);
  checkRawKey(value, what);
  return Buffer.from(value);
}

function checkRawKey(key: Uint8Array, what: string): void {
  if (!(key instanceof Uint8Array) || key.length !== KEY_SIZE) {
    throw keyError(`invalid ${what}: expected ${KEY_SIZE} bytes, got ${key instanceof Uint8Array ? key.length : typeof key}`);
  }
}
