// The handshake's primitives, from node:crypto wherever it has them: HASH/HMAC
// (BLAKE2s), X25519, ChaCha20-Poly1305. Two it lacks are built here from standards:
// keyed BLAKE2s-128 (RFC 7693, for mac1/mac2/cookies) and XChaCha20-Poly1305
// (draft-irtf-cfrg-xchacha, for the cookie reply) on top of node's ChaCha20.
import { createCipheriv, createDecipheriv, createHash, createHmac, diffieHellman, KeyObject } from 'node:crypto';
import { AEAD_NONCE_SIZE, AEAD_TAG_SIZE, KEY_SIZE, MAC_SIZE, XAEAD_NONCE_SIZE } from './constants.js';
import { privateKeyObject, publicKeyObject } from './keys.js';
import { EtherlinkError } from '../core/errors.js';

const HASH_ALGORITHM = 'blake2s256';
const AEAD_ALGORITHM = 'chacha20-poly1305';

/** A handshake step failed (bad tag, low-order point...): code ERR_HANDSHAKE. Never carries secrets. */
export function handshakeError(message: string): EtherlinkError {
  return new EtherlinkError('ERR_HANDSHAKE', message);
}

/** HASH(a || b || ...) = BLAKE2s-256. */
export function hash(...parts: Uint8Array[]): Buffer {
  const h = createHash(HASH_ALGORITHM);
  for (const p of parts) h.update(p);
  return h.digest();
}

/** HMAC-BLAKE2s-256 (RFC 2104 with a 64-byte block), as Noise's HKDF uses. */
export function hmac(key: Uint8Array, ...parts: Uint8Array[]): Buffer {
  const h = createHmac(HASH_ALGORITHM, key);
  for (const p of parts) h.update(p);
  return h.digest();
}

/** Noise's HKDF(chainingKey, input, n): n (2 or 3) outputs of HASHLEN bytes. */
export function kdf(chainingKey: Uint8Array, input: Uint8Array, n: 1 | 2 | 3): Buffer[] {
  const temp = hmac(chainingKey, input);
  const out: Buffer[] = [];
  let prev: Buffer = Buffer.alloc(0);
  for (let i = 1; i <= n; i++) {
    prev = hmac(temp, prev, Uint8Array.of(i));
    out.push(prev);
  }
  temp.fill(0);
  return out;
}

let dhCount = 0;

/** X25519(private, public). Throws ERR_HANDSHAKE for an all-zero result (low-order point). */
export function dh(privateKey: Uint8Array | KeyObject, publicKey: Uint8Array): Buffer {
  dhCount++;
  try {
    return diffieHellman({ privateKey: privateKey instanceof KeyObject ? privateKey : privateKeyObject(privateKey), publicKey: publicKeyObject(publicKey) });
  } catch {
    // OpenSSL refuses an all-zero shared secret, as WireGuard does.
    throw handshakeError('X25519 failed: the peer sent a low-order or invalid public key');
  }
}

/** How many X25519 operations this process has done: lets tests prove a check came before any DH. */
export function dhOperations(): number {
  return dhCount;
}

/** WireGuard's/Noise's ChaChaPoly nonce: 32 zero bits, then the counter as 64-bit little-endian. */
export function counterNonce(counter: number | bigint): Buffer {
  const nonce = Buffer.alloc(AEAD_NONCE_SIZE);
  nonce.writeBigUInt64LE(BigInt(counter), 4);
  return nonce;
}

/** ChaCha20-Poly1305 seal: ciphertext || 16-byte tag. */
export function aeadSeal(key: Uint8Array, counter: number | bigint, plaintext: Uint8Array, ad: Uint8Array): Buffer {
  return sealWithNonce(key, counterNonce(counter), plaintext, ad);
}

/** ChaCha20-Poly1305 open; null when the tag does not verify. */
export function aeadOpen(key: Uint8Array, counter: number | bigint, sealed: Uint8Array, ad: Uint8Array): Buffer | null {
  return openWithNonce(key, counterNonce(counter), sealed, ad);
}

function sealWithNonce(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, ad: Uint8Array): Buffer {
  const c = createCipheriv(AEAD_ALGORITHM, key, nonce, { authTagLength: AEAD_TAG_SIZE });
  c.setAAD(ad, { plaintextLength: plaintext.length });
  const body = c.update(plaintext);
  c.final();
  return Buffer.concat([body, c.getAuthTag()]);
}

function openWithNonce(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, ad: Uint8Array): Buffer | null {
  if (sealed.length < AEAD_TAG_SIZE) return null;
  const bodyLength = sealed.length - AEAD_TAG_SIZE;
  const d = createDecipheriv(AEAD_ALGORITHM, key, nonce, { authTagLength: AEAD_TAG_SIZE });
  d.setAAD(ad, { plaintextLength: bodyLength });
  d.setAuthTag(sealed.subarray(bodyLength));
  const body = d.update(sealed.subarray(0, bodyLength));
  try {
    d.final();
  } catch {
    body.fill(0);
    return null;
  }
  return body;
}

// ---------------------------------------------------------------- XChaCha20-Poly1305

const CHACHA_CONSTANTS = Uint32Array.of(0x61707865, 0x3320646e, 0x79622d32, 0x6b206574);
const CHACHA_BLOCK = 64;
const HCHACHA_NONCE_SIZE = 16;

/**
 * HChaCha20(key, nonce16) (draft-irtf-cfrg-xchacha section 2.2). node exposes only
 * the ChaCha20 *keystream*, which is rounds(state) + state; OpenSSL's 16-byte
 * chacha20 IV is exactly state words 12..15. So rounds(state) = keystream - state,
 * and HChaCha20 is its words 0..3 and 12..15.
 */
export function hchacha20(key: Uint8Array, nonce16: Uint8Array): Buffer {
  if (key.length !== KEY_SIZE || nonce16.length !== HCHACHA_NONCE_SIZE) throw new EtherlinkError('ERR_OUT_OF_RANGE', 'hchacha20: key 32, nonce 16 bytes');
  const c = createCipheriv('chacha20', key, nonce16);
  const ks = c.update(Buffer.alloc(CHACHA_BLOCK));
  const n = Buffer.from(nonce16.buffer, nonce16.byteOffset, nonce16.byteLength);
  const out = Buffer.alloc(KEY_SIZE);
  for (let i = 0; i < 4; i++) {
    out.writeUInt32LE((ks.readUInt32LE(4 * i) - CHACHA_CONSTANTS[i]!) >>> 0, 4 * i);
    out.writeUInt32LE((ks.readUInt32LE(48 + 4 * i) - n.readUInt32LE(4 * i)) >>> 0, 16 + 4 * i);
  }
  ks.fill(0);
  return out;
}

function xNonce(key: Uint8Array, nonce24: Uint8Array): { subkey: Buffer; nonce: Buffer } {
  if (nonce24.length !== XAEAD_NONCE_SIZE) throw new EtherlinkError('ERR_OUT_OF_RANGE', 'xchacha20-poly1305: nonce must be 24 bytes');
  const nonce = Buffer.alloc(AEAD_NONCE_SIZE);
  nonce.set(nonce24.subarray(HCHACHA_NONCE_SIZE), 4);
  return { subkey: hchacha20(key, nonce24.subarray(0, HCHACHA_NONCE_SIZE)), nonce };
}

/** XChaCha20-Poly1305 seal (WireGuard's XAEAD): ciphertext || tag. */
export function xaeadSeal(key: Uint8Array, nonce24: Uint8Array, plaintext: Uint8Array, ad: Uint8Array): Buffer {
  const { subkey, nonce } = xNonce(key, nonce24);
  try {
    return sealWithNonce(subkey, nonce, plaintext, ad);
  } finally {
    subkey.fill(0);
  }
}

/** XChaCha20-Poly1305 open; null when the tag does not verify. */
export function xaeadOpen(key: Uint8Array, nonce24: Uint8Array, sealed: Uint8Array, ad: Uint8Array): Buffer | null {
  const { subkey, nonce } = xNonce(key, nonce24);
  try {
    return openWithNonce(subkey, nonce, sealed, ad);
  } finally {
    subkey.fill(0);
  }
}

// ---------------------------------------------------------------- keyed BLAKE2s (RFC 7693)

const B2S_IV = Uint32Array.of(
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
);
const B2S_SIGMA = [
  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
  [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
  [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
  [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
  [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
  [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
  [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
  [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
  [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
  [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
].map((row) => Uint8Array.from(row));
const B2S_BLOCK = 64;
const B2S_MAX_OUT = 32;
const B2S_MAX_KEY = 32;

/**
 * BLAKE2s(key, data) with `outLength` bytes of output (RFC 7693): WireGuard's MAC,
 * which is *keyed* BLAKE2s, not HMAC. node:crypto's blake2s256 is unkeyed and
 * fixed at 32 bytes, so this is the reference algorithm in JS; mac1 inputs are
 * 116 or 60 bytes, i.e. 3 compressions.
 */
export function blake2s(data: Uint8Array, key: Uint8Array = new Uint8Array(0), outLength: number = B2S_MAX_OUT): Buffer {
  if (outLength < 1 || outLength > B2S_MAX_OUT || key.length > B2S_MAX_KEY) throw new EtherlinkError('ERR_OUT_OF_RANGE', 'blake2s: bad key or output length');
  const h = Uint32Array.from(B2S_IV);
  h[0] = (h[0]! ^ 0x01010000 ^ (key.length << 8) ^ outLength) >>> 0;
  const v = new Uint32Array(16);
  const m = new Uint32Array(16);
  const block = new Uint8Array(B2S_BLOCK);
  let t = 0;
  // The key, zero-padded to a block, is the first block; when data is empty it is also the last.
  const input = key.length > 0 ? concatBytes(padBlock(key), data) : data;
  let off = 0;
  while (input.length - off > B2S_BLOCK) {
    t += B2S_BLOCK;
    block.set(input.subarray(off, off + B2S_BLOCK));
    compress(h, block, t, false, v, m);
    off += B2S_BLOCK;
  }
  const rest = input.length - off;
  block.fill(0);
  block.set(input.subarray(off));
  t += rest;
  compress(h, block, t, true, v, m);
  const out = Buffer.alloc(B2S_MAX_OUT);
  for (let i = 0; i < 8; i++) out.writeUInt32LE(h[i]!, 4 * i);
  block.fill(0);
  return outLength === B2S_MAX_OUT ? out : Buffer.from(out.subarray(0, outLength));
}

/** WireGuard's MAC(key, input) = keyed BLAKE2s with a 16-byte output. */
export function mac(key: Uint8Array, input: Uint8Array): Buffer {
  return blake2s(input, key, MAC_SIZE);
}

function padBlock(key: Uint8Array): Uint8Array {
  const b = new Uint8Array(B2S_BLOCK);
  b.set(key);
  return b;
}

function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function rotr(x: number, n: number): number {
  return ((x >>> n) | (x << (32 - n))) >>> 0;
}

function compress(h: Uint32Array, block: Uint8Array, t: number, last: boolean, v: Uint32Array, m: Uint32Array): void {
  for (let i = 0; i < 16; i++) {
    m[i] = (block[4 * i]! | (block[4 * i + 1]! << 8) | (block[4 * i + 2]! << 16) | (block[4 * i + 3]! << 24)) >>> 0;
  }
  for (let i = 0; i < 8; i++) {
    v[i] = h[i]!;
    v[i + 8] = B2S_IV[i]!;
  }
  v[12] = (v[12]! ^ t) >>> 0; // t < 2^32 here: no input is that long
  v[13] = (v[13]! ^ Math.floor(t / 0x1_0000_0000)) >>> 0;
  if (last) v[14] = ~v[14]! >>> 0;
  const g = (a: number, b: number, c: number, d: number, x: number, y: number): void => {
    v[a] = v[a]! + v[b]! + x;
    v[d] = rotr(v[d]! ^ v[a]!, 16);
    v[c] = v[c]! + v[d]!;
    v[b] = rotr(v[b]! ^ v[c]!, 12);
    v[a] = v[a]! + v[b]! + y;
    v[d] = rotr(v[d]! ^ v[a]!, 8);
    v[c] = v[c]! + v[d]!;
    v[b] = rotr(v[b]! ^ v[c]!, 7);
  };
  for (let r = 0; r < 10; r++) {
    const s = B2S_SIGMA[r]!;
    g(0, 4, 8, 12, m[s[0]!]!, m[s[1]!]!);
    g(1, 5, 9, 13, m[s[2]!]!, m[s[3]!]!);
    g(2, 6, 10, 14, m[s[4]!]!, m[s[5]!]!);
    g(3, 7, 11, 15, m[s[6]!]!, m[s[7]!]!);
    g(0, 5, 10, 15, m[s[8]!]!, m[s[9]!]!);
    g(1, 6, 11, 12, m[s[10]!]!, m[s[11]!]!);
    g(2, 7, 8, 13, m[s[12]!]!, m[s[13]!]!);
    g(3, 4, 9, 14, m[s[14]!]!, m[s[15]!]!);
  }
  for (let i = 0; i < 8; i++) h[i] = (h[i]! ^ v[i]! ^ v[i + 8]!) >>> 0;
}

