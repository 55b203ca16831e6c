// mac1, mac2 and cookies (WireGuard's DoS defence, as wireguard-go's
// device/cookie.go): the sender's CookieGenerator and the receiver's
// CookieChecker. mac1 proves a handshake is meant for our key, with no DH;
// under load, mac2 proves the sender receives at its address.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { KEY_SIZE, MAC_SIZE, XAEAD_NONCE_SIZE } from '../crypto/constants.js';
import { hash, mac, xaeadOpen, xaeadSeal } from '../crypto/primitives.js';
import { COOKIE_REFRESH_TIME_MS, COOKIE_REPLY_SIZE, CookieReplyOffset, LABEL_COOKIE, LABEL_MAC1, MessageType } from './constants.js';
import { writePrefix } from './wire.js';
import { EtherlinkError } from '../core/errors.js';

function checkKey(key: Uint8Array, what: string): void {
  if (key.length !== KEY_SIZE) throw new EtherlinkError('ERR_INVALID_KEY', `${what} must be ${KEY_SIZE} bytes, got ${key.length}`);
}

function equal16(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * The sender's side of mac1/mac2 for one remote static key (wireguard-go's
 * CookieGenerator). Keep one per peer across handshakes: it holds the cookie.
 */
export class CookieGenerator {
  private readonly mac1Key: Buffer;
  private readonly cookieKey: Buffer;
  private cookie: Buffer | null = null;
  private cookieSetAt = 0;
  private lastMac1: Buffer | null = null;

  constructor(remoteStaticPublicKey: Uint8Array) {
    checkKey(remoteStaticPublicKey, 'remote static public key');
    this.mac1Key = hash(Buffer.from(LABEL_MAC1), remoteStaticPublicKey);
    this.cookieKey = hash(Buffer.from(LABEL_COOKIE), remoteStaticPublicKey);
  }

  /** Fill the last 32 bytes of a handshake message: mac1, then mac2 if a fresh cookie is held (else zeros). */
  addMacs(message: Buffer, now: number): void {
    const mac2At = message.length - MAC_SIZE;
    const mac1At = mac2At - MAC_SIZE;
    const m1 = mac(this.mac1Key, message.subarray(0, mac1At));
    m1.copy(message, mac1At);
    this.lastMac1 = m1;
    if (this.cookie !== null && now - this.cookieSetAt <= COOKIE_REFRESH_TIME_MS) {
      mac(this.cookie, message.subarray(0, mac2At)).copy(message, mac2At);
    } else {
      message.fill(0, mac2At);
    }
  }

  /** Store the cookie of a cookie reply answering our last message; false if it does not authenticate. */
  consumeReply(reply: Uint8Array, now: number): boolean {
    if (this.lastMac1 === null || reply.length !== COOKIE_REPLY_SIZE) return false;
    const nonce = reply.subarray(CookieReplyOffset.NONCE, CookieReplyOffset.NONCE + XAEAD_NONCE_SIZE);
    const cookie = xaeadOpen(this.cookieKey, nonce, reply.subarray(CookieReplyOffset.COOKIE), this.lastMac1);
    if (cookie === null) return false;
    this.cookie = cookie;
    this.cookieSetAt = now;
    return true;
  }

  get hasCookie(): boolean {
    return this.cookie !== null;
  }
}

/**
 * The receiver's side of mac1/mac2 for our static key (wireguard-go's
 * CookieChecker). mac1 costs a keyed BLAKE2s and no DH, so junk and messages for
 * another key are dropped before any expensive work.
 */
export class CookieChecker {
  private readonly mac1Key: Buffer;
  private readonly cookieKey: Buffer;
  private secret: Buffer | null = null;
  private secretSetAt = 0;

  constructor(
    localStaticPublicKey: Uint8Array,
    private readonly random: (n: number) => Buffer = randomBytes,
  ) {
    checkKey(localStaticPublicKey, 'local static public key');
    this.mac1Key = hash(Buffer.from(LABEL_MAC1), localStaticPublicKey);
    this.cookieKey = hash(Buffer.from(LABEL_COOKIE), localStaticPublicKey);
  }

  checkMac1(message: Uint8Array): boolean {
    const mac1At = message.length - 2 * MAC_SIZE;
    if (mac1At < 0) return false;
    return equal16(mac(this.mac1Key, message.subarray(0, mac1At)), message.subarray(mac1At, mac1At + MAC_SIZE));
  }

  /** mac2 proves the sender received our cookie for `source` (its underlay address bytes) in the last 2 minutes. */
  checkMac2(message: Uint8Array, source: Uint8Array, now: number): boolean {
    if (this.secret === null || now - this.secretSetAt > COOKIE_REFRESH_TIME_MS) return false;
    const mac2At = message.length - MAC_SIZE;
    if (mac2At < MAC_SIZE) return false;
    const cookie = mac(this.secret, source);
    return equal16(mac(cookie, message.subarray(0, mac2At)), message.subarray(mac2At));
  }

  /** A 64-byte cookie reply to `message` (whose mac1 was valid) from `source`. */
  createReply(message: Uint8Array, receiverIndex: number, source: Uint8Array, now: number): Buffer {
    if (this.secret === null || now - this.secretSetAt > COOKIE_REFRESH_TIME_MS) {
      this.secret = this.random(KEY_SIZE);
      this.secretSetAt = now;
    }
    const mac1At = message.length - 2 * MAC_SIZE;
    const cookie = mac(this.secret, source);
    const reply = Buffer.alloc(COOKIE_REPLY_SIZE);
    writePrefix(reply, 0, MessageType.COOKIE_REPLY);
    reply.writeUInt32BE(receiverIndex >>> 0, CookieReplyOffset.RECEIVER_INDEX);
    const nonce = this.random(XAEAD_NONCE_SIZE);
    nonce.copy(reply, CookieReplyOffset.NONCE);
    xaeadSeal(this.cookieKey, nonce, cookie, message.subarray(mac1At, mac1At + MAC_SIZE)).copy(reply, CookieReplyOffset.COOKIE);
    return reply;
  }
}
