// EtherLink v2's handshake, sans-IO: the Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s core
// (parameterizable, test-vector exact) and, on top, WireGuard's messages, TAI64N, mac1/mac2 and cookies.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import {
  AEAD_TAG_SIZE,
  COOKIE_REFRESH_TIME_MS,
  COOKIE_REPLY_SIZE,
  CookieReplyOffset,
  ETHERLINK_IDENTIFIER,
  HANDSHAKE_INITIATION_RATE_MS,
  HASH_SIZE,
  INITIATION_SIZE,
  InitiationOffset,
  KEY_SIZE,
  LABEL_COOKIE,
  LABEL_MAC1,
  MAC_SIZE,
  NOISE_CONSTRUCTION,
  PROTOCOL_VERSION_2,
  RESPONSE_SIZE,
  ResponseOffset,
  TAI64_EPOCH,
  TAI64N_WHITENER_MASK,
  TIMESTAMP_SIZE,
  V2MessageType,
  XAEAD_NONCE_SIZE,
} from './constants.js';
import { generateKeyPair, publicKeyOf } from './keys.js';
import { aeadOpen, aeadSeal, dh, hash, HandshakeError, kdf, mac, xaeadOpen, xaeadSeal } from './primitives.js';

export { HandshakeError } from './primitives.js';

const EMPTY = new Uint8Array(0);
/** WireGuard's "no PSK": 32 zero bytes, so psk2 is always in the pattern. */
const ZERO_PSK = new Uint8Array(KEY_SIZE);
const ENCRYPTED_STATIC_SIZE = KEY_SIZE + AEAD_TAG_SIZE;

// ================================================================ Noise core

/** Noise's SymmetricState with its CipherState (k, n) folded in. */
class SymmetricState {
  ck: Buffer;
  h: Buffer;
  private k: Buffer | null = null;
  private n = 0;

  constructor(prologue: Uint8Array) {
    const name = Buffer.from(NOISE_CONSTRUCTION, 'latin1');
    // InitializeSymmetric: a name longer than HASHLEN is hashed (ours is 37 bytes).
    this.h = name.length <= HASH_SIZE ? Buffer.concat([name, Buffer.alloc(HASH_SIZE - name.length)]) : hash(name);
    this.ck = Buffer.from(this.h);
    this.mixHash(prologue);
  }

  mixHash(data: Uint8Array): void {
    this.h = hash(this.h, data);
  }

  mixKey(input: Uint8Array): void {
    const [ck, k] = kdf(this.ck, input, 2);
    this.ck = ck!;
    this.k = k!;
    this.n = 0;
  }

  mixKeyAndHash(input: Uint8Array): void {
    const [ck, th, k] = kdf(this.ck, input, 3);
    this.ck = ck!;
    this.mixHash(th!);
    this.k = k!;
    this.n = 0;
  }

  encryptAndHash(plaintext: Uint8Array): Buffer {
    if (this.k === null) {
      this.mixHash(plaintext);
      return Buffer.from(plaintext);
    }
    const ct = aeadSeal(this.k, this.n++, plaintext, this.h);
    this.mixHash(ct);
    return ct;
  }

  decryptAndHash(ciphertext: Uint8Array): Buffer {
    if (this.k === null) {
      this.mixHash(ciphertext);
      return Buffer.from(ciphertext);
    }
    const pt = aeadOpen(this.k, this.n++, ciphertext, this.h);
    if (pt === null) throw new HandshakeError('handshake message failed authentication');
    this.mixHash(ciphertext);
    return pt;
  }

  /** Noise's Split(): the initiator sends with the first key, the responder with the second. */
  split(): [Buffer, Buffer] {
    const [k1, k2] = kdf(this.ck, EMPTY, 2);
    return [k1!, k2!];
  }

  /** A copy to read a message on, committed only if it authenticates (as wireguard-go does). */
  clone(): SymmetricState {
    const c = Object.create(SymmetricState.prototype) as SymmetricState;
    c.ck = Buffer.from(this.ck);
    c.h = Buffer.from(this.h);
    c.k = this.k === null ? null : Buffer.from(this.k);
    c.n = this.n;
    return c;
  }

  wipe(): void {
    this.ck.fill(0);
    this.k?.fill(0);
  }
}

interface Ephemeral {
  privateKey: Buffer;
  publicKey: Buffer;
}

function ephemeral(privateKey: Uint8Array | undefined): Ephemeral {
  if (privateKey === undefined) return generateKeyPair();
  return { privateKey: Buffer.from(privateKey), publicKey: publicKeyOf(privateKey) };
}

function checkKey(key: Uint8Array, what: string): void {
  if (key.length !== KEY_SIZE) throw new RangeError(`${what} must be ${KEY_SIZE} bytes, got ${key.length}`);
}

/** The pair of keys a handshake ends with: one per direction. */
export interface CipherKeys {
  sending: Buffer;
  receiving: Buffer;
}

export interface IKpsk2InitiatorOptions {
  /** Hashed into the transcript; both sides must agree. EtherLink: ETHERLINK_IDENTIFIER. */
  prologue: Uint8Array;
  staticPrivateKey: Uint8Array;
  remoteStaticPublicKey: Uint8Array;
  /** 32 bytes; omitted = all zeros, as WireGuard. */
  psk?: Uint8Array;
  /** Only for test vectors: a fixed ephemeral instead of a fresh one. */
  ephemeralPrivateKey?: Uint8Array;
}

/**
 * The initiator of Noise IKpsk2:
 *   <- s
 *   ...
 *   -> e, es, s, ss
 *   <- e, ee, se, psk
 * One object per handshake attempt; it throws HandshakeError and must then be dropped.
 */
export class IKpsk2Initiator {
  private sym: SymmetricState;
  private readonly e: Ephemeral;
  private readonly s: Buffer;
  private readonly rs: Buffer;
  private readonly psk: Buffer;
  private step = 0;

  constructor(o: IKpsk2InitiatorOptions) {
    checkKey(o.staticPrivateKey, 'static private key');
    checkKey(o.remoteStaticPublicKey, 'remote static public key');
    if (o.psk !== undefined) checkKey(o.psk, 'psk');
    this.s = Buffer.from(o.staticPrivateKey);
    this.rs = Buffer.from(o.remoteStaticPublicKey);
    this.psk = Buffer.from(o.psk ?? ZERO_PSK);
    this.e = ephemeral(o.ephemeralPrivateKey);
    this.sym = new SymmetricState(o.prologue);
    this.sym.mixHash(this.rs); // pre-message "<- s"
  }

  /** Message 1: e (32) || encrypted s (48) || encrypted payload (payload + 16). */
  writeMessage1(payload: Uint8Array): Buffer {
    this.expectStep(0);
    const sym = this.sym;
    sym.mixHash(this.e.publicKey);
    sym.mixKey(this.e.publicKey); // psk handshakes also MixKey(e)
    sym.mixKey(dh(this.e.privateKey, this.rs)); // es
    const encStatic = sym.encryptAndHash(publicKeyOf(this.s));
    sym.mixKey(dh(this.s, this.rs)); // ss
    const encPayload = sym.encryptAndHash(payload);
    return Buffer.concat([this.e.publicKey, encStatic, encPayload]);
  }

  /**
   * Message 2 -> its payload; throws HandshakeError if it does not authenticate,
   * and then leaves the state untouched so a forged response can't spoil the
   * handshake for the genuine one.
   */
  readMessage2(message: Uint8Array): Buffer {
    if (this.step !== 1) throw new HandshakeError('handshake used out of order or after failure');
    if (message.length < KEY_SIZE + AEAD_TAG_SIZE) throw new HandshakeError('handshake response too short');
    const sym = this.sym.clone();
    const re = message.subarray(0, KEY_SIZE);
    sym.mixHash(re);
    sym.mixKey(re);
    sym.mixKey(dh(this.e.privateKey, re)); // ee
    sym.mixKey(dh(this.s, re)); // se
    sym.mixKeyAndHash(this.psk); // psk
    const payload = sym.decryptAndHash(message.subarray(KEY_SIZE));
    this.sym.wipe();
    this.sym = sym;
    this.step = 2;
    return payload;
  }

  /** After message 2: the transport keys; wipes the handshake secrets. */
  split(): CipherKeys {
    this.expectStep(2);
    const [i2r, r2i] = this.sym.split();
    this.wipe();
    return { sending: i2r, receiving: r2i };
  }

  get handshakeHash(): Buffer {
    return Buffer.from(this.sym.h);
  }

  wipe(): void {
    this.sym.wipe();
    this.e.privateKey.fill(0);
    this.s.fill(0);
    this.psk.fill(0);
    this.step = 3;
  }

  private expectStep(step: number): void {
    if (this.step !== step) throw new HandshakeError('handshake used out of order or after failure');
    if (step === 0) this.step = 1;
  }
}

export interface IKpsk2ResponderOptions {
  prologue: Uint8Array;
  staticPrivateKey: Uint8Array;
}

/**
 * The responder of Noise IKpsk2. Message 1 is read in two steps so that the
 * caller can look up the initiator's static key (allow list, PSK) after the first
 * DH and before the second; the PSK is only needed for message 2.
 */
export class IKpsk2Responder {
  private readonly sym: SymmetricState;
  private readonly s: Buffer;
  private e: Ephemeral | null = null;
  private re: Buffer | null = null;
  private rs: Buffer | null = null;
  private rest: Buffer | null = null;
  private step = 0;

  constructor(o: IKpsk2ResponderOptions) {
    checkKey(o.staticPrivateKey, 'static private key');
    this.s = Buffer.from(o.staticPrivateKey);
    this.sym = new SymmetricState(o.prologue);
    this.sym.mixHash(publicKeyOf(this.s)); // pre-message "<- s"
  }

  /** Message 1, first half (e, es, s): returns the initiator's static public key. One DH. */
  readMessage1Static(message: Uint8Array): Buffer {
    this.expect(0);
    if (message.length < KEY_SIZE + ENCRYPTED_STATIC_SIZE + AEAD_TAG_SIZE) throw new HandshakeError('handshake initiation too short');
    const sym = this.sym;
    this.re = Buffer.from(message.subarray(0, KEY_SIZE));
    sym.mixHash(this.re);
    sym.mixKey(this.re);
    sym.mixKey(dh(this.s, this.re)); // es
    this.rs = sym.decryptAndHash(message.subarray(KEY_SIZE, KEY_SIZE + ENCRYPTED_STATIC_SIZE));
    this.rest = Buffer.from(message.subarray(KEY_SIZE + ENCRYPTED_STATIC_SIZE));
    this.step = 1;
    return Buffer.from(this.rs);
  }

  /** Message 1, second half (ss, payload): returns the payload. The second DH. */
  readMessage1Payload(): Buffer {
    this.expect(1);
    this.sym.mixKey(dh(this.s, this.rs!)); // ss
    const payload = this.sym.decryptAndHash(this.rest!);
    this.step = 2;
    return payload;
  }

  /**
   * Message 2: e (32) || encrypted payload (payload + 16). `psk` omitted = zeros;
   * `ephemeralPrivateKey` only for test vectors.
   */
  writeMessage2(payload: Uint8Array, psk: Uint8Array = ZERO_PSK, ephemeralPrivateKey?: Uint8Array): Buffer {
    this.expect(2);
    checkKey(psk, 'psk');
    const sym = this.sym;
    this.e = ephemeral(ephemeralPrivateKey);
    sym.mixHash(this.e.publicKey);
    sym.mixKey(this.e.publicKey);
    sym.mixKey(dh(this.e.privateKey, this.re!)); // ee
    sym.mixKey(dh(this.e.privateKey, this.rs!)); // se
    sym.mixKeyAndHash(psk); // psk
    const enc = sym.encryptAndHash(payload);
    this.step = 3;
    return Buffer.concat([this.e.publicKey, enc]);
  }

  split(): CipherKeys {
    this.expect(3);
    const [i2r, r2i] = this.sym.split();
    this.wipe();
    return { sending: r2i, receiving: i2r };
  }

  get handshakeHash(): Buffer {
    return Buffer.from(this.sym.h);
  }

  wipe(): void {
    this.sym.wipe();
    this.e?.privateKey.fill(0);
    this.s.fill(0);
    this.step = 4;
  }

  private expect(step: number): void {
    if (this.step !== step) throw new HandshakeError('handshake used out of order or after failure');
  }
}

// ================================================================ WireGuard layer

/** TAI64N of a Unix time in milliseconds, nanoseconds whitened as wireguard-go does. */
export function tai64n(unixMs: number): Buffer {
  const out = Buffer.alloc(TIMESTAMP_SIZE);
  const seconds = Math.floor(unixMs / 1000);
  out.writeBigUInt64BE(TAI64_EPOCH + BigInt(seconds), 0);
  const nanos = Math.floor((unixMs - seconds * 1000) * 1e6);
  out.writeUInt32BE((nanos & ~TAI64N_WHITENER_MASK) >>> 0, 8);
  return out;
}

function writePrefix(buf: Buffer, type: V2MessageType): void {
  buf[0] = PROTOCOL_VERSION_2;
  buf[1] = type;
  buf[2] = 0;
  buf[3] = 0;
}

function hasPrefix(buf: Uint8Array, type: V2MessageType, size: number): boolean {
  return buf.length === size && buf[0] === PROTOCOL_VERSION_2 && buf[1] === type && buf[2] === 0 && buf[3] === 0;
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
    writePrefix(reply, V2MessageType.COOKIE_REPLY);
    reply.writeUInt32BE(receiverIndex >>> 0, CookieReplyOffset.RECEIVER_INDEX);
    const nonce = this.random(XAEAD_NONCE_SIZE);
    nonce.copy(reply, CookieReplyOffset.NONCE);
    xaeadSeal(this.cookieKey, nonce, cookie, message.subarray(mac1At, mac1At + MAC_SIZE)).copy(reply, CookieReplyOffset.COOKIE);
    return reply;
  }
}

/** What a completed handshake hands to the transport layer. */
export interface TransportKeys extends CipherKeys {
  /** Index the peer writes in messages to us (we chose it). */
  localIndex: number;
  /** Index we write in messages to the peer. */
  remoteIndex: number;
  /** The initiator may send at once; the responder must wait for the first authenticated transport message (key confirmation). */
  isInitiator: boolean;
  /** The peer's static public key. */
  remotePublicKey: Buffer;
}

export type FailureReason =
  | 'malformed' // wrong size, version, type or reserved bytes
  | 'bad-mac1' // not for our key, or junk: dropped without a DH
  | 'wrong-index' // a response/cookie reply for another handshake
  | 'decrypt' // Noise authentication failed (wrong key, wrong PSK, tampering)
  | 'replay' // initiation timestamp not newer than the last accepted from this initiator
  | 'flood'; // more than one initiation per 20 ms from this initiator

export interface InitiationOptions {
  staticPrivateKey: Uint8Array;
  responderPublicKey: Uint8Array;
  psk?: Uint8Array;
  /** Our index for this session: random, non-zero, unique among ours. */
  senderIndex: number;
  /** Unix time in ms (Date.now()): the TAI64N timestamp and the cookie's age. */
  now: number;
  /** The per-peer mac generator, kept across attempts so a cookie applies to the retry. */
  cookies?: CookieGenerator;
  /** Default ETHERLINK_IDENTIFIER. */
  prologue?: Uint8Array;
  /** Only for tests. */
  ephemeralPrivateKey?: Uint8Array;
}

/** The port's side of one handshake attempt. */
export class InitiatorHandshake {
  private done = false;

  private constructor(
    private readonly noise: IKpsk2Initiator,
    readonly senderIndex: number,
    readonly cookies: CookieGenerator,
    private readonly responderPublicKey: Buffer,
    /** Checks the response's mac1, which is keyed by *our* public key. */
    private readonly responseChecker: CookieChecker,
  ) {}

  /** Build a 148-byte initiation. Send it; keep the handshake for the response. */
  static createInitiation(o: InitiationOptions): { message: Buffer; handshake: InitiatorHandshake } {
    const init: IKpsk2InitiatorOptions = {
      prologue: o.prologue ?? Buffer.from(ETHERLINK_IDENTIFIER),
      staticPrivateKey: o.staticPrivateKey,
      remoteStaticPublicKey: o.responderPublicKey,
    };
    if (o.psk !== undefined) init.psk = o.psk;
    if (o.ephemeralPrivateKey !== undefined) init.ephemeralPrivateKey = o.ephemeralPrivateKey;
    const noise = new IKpsk2Initiator(init);
    const cookies = o.cookies ?? new CookieGenerator(o.responderPublicKey);
    const message = Buffer.alloc(INITIATION_SIZE);
    writePrefix(message, V2MessageType.HANDSHAKE_INITIATION);
    message.writeUInt32BE(o.senderIndex >>> 0, InitiationOffset.SENDER_INDEX);
    noise.writeMessage1(tai64n(o.now)).copy(message, InitiationOffset.EPHEMERAL);
    cookies.addMacs(message, o.now);
    return {
      message,
      handshake: new InitiatorHandshake(
        noise,
        o.senderIndex >>> 0,
        cookies,
        Buffer.from(o.responderPublicKey),
        new CookieChecker(publicKeyOf(o.staticPrivateKey)),
      ),
    };
  }

  /** The 92-byte response -> transport keys. A failure leaves the handshake waiting for a genuine response. */
  consumeResponse(message: Uint8Array): { ok: true; keys: TransportKeys } | { ok: false; reason: FailureReason } {
    if (this.done) return { ok: false, reason: 'wrong-index' };
    if (!hasPrefix(message, V2MessageType.HANDSHAKE_RESPONSE, RESPONSE_SIZE)) return { ok: false, reason: 'malformed' };
    const m = Buffer.from(message.buffer, message.byteOffset, message.byteLength);
    if (m.readUInt32BE(ResponseOffset.RECEIVER_INDEX) !== this.senderIndex) return { ok: false, reason: 'wrong-index' };
    if (!this.responseChecker.checkMac1(m)) return { ok: false, reason: 'bad-mac1' };
    const remoteIndex = m.readUInt32BE(ResponseOffset.SENDER_INDEX);
    try {
      this.noise.readMessage2(m.subarray(ResponseOffset.EPHEMERAL, ResponseOffset.MAC1));
    } catch {
      return { ok: false, reason: 'decrypt' };
    }
    const keys = this.noise.split();
    this.done = true;
    return {
      ok: true,
      keys: { ...keys, localIndex: this.senderIndex, remoteIndex, isInitiator: true, remotePublicKey: this.responderPublicKey },
    };
  }

  /** A cookie reply for this attempt: store the cookie so the retransmitted initiation carries mac2. */
  consumeCookieReply(message: Uint8Array, now: number): boolean {
    if (!hasPrefix(message, V2MessageType.COOKIE_REPLY, COOKIE_REPLY_SIZE)) return false;
    const m = Buffer.from(message.buffer, message.byteOffset, message.byteLength);
    if (m.readUInt32BE(CookieReplyOffset.RECEIVER_INDEX) !== this.senderIndex) return false;
    return this.cookies.consumeReply(m, now);
  }
}

export interface ResponderOptions {
  staticPrivateKey: Uint8Array;
  prologue?: Uint8Array;
  /** Injected randomness for the cookie secret and nonces (tests). */
  random?: (n: number) => Buffer;
}

export interface ConsumeInitiationOptions {
  /** The sender's underlay address as bytes (e.g. 16-byte IPv6 + 2-byte port): what the cookie binds to. */
  source: Uint8Array;
  /** When true, an initiation without a valid mac2 gets a cookie reply instead of a DH. */
  underLoad: boolean;
  /** Unix ms (cookie secret age). */
  now: number;
}

export type ConsumeInitiationResult =
  | { kind: 'drop'; reason: FailureReason }
  | { kind: 'cookie'; reply: Buffer }
  | { kind: 'initiation'; initiation: ReceivedInitiation };

interface InitiatorRecord {
  timestamp: Buffer;
  consumedAt: number;
}

/**
 * The switch's side: one object for our static key, holding the cookie secret and,
 * per initiator that was accepted, the last timestamp (so the map only grows with
 * the allow list, never with attacker input).
 */
export class ResponderHandshake {
  readonly publicKey: Buffer;
  private readonly staticPrivateKey: Buffer;
  private readonly prologue: Buffer;
  private readonly checker: CookieChecker;
  private readonly initiators = new Map<string, InitiatorRecord>();

  constructor(o: ResponderOptions) {
    checkKey(o.staticPrivateKey, 'static private key');
    this.staticPrivateKey = Buffer.from(o.staticPrivateKey);
    this.publicKey = publicKeyOf(this.staticPrivateKey);
    this.prologue = Buffer.from(o.prologue ?? Buffer.from(ETHERLINK_IDENTIFIER));
    this.checker = new CookieChecker(this.publicKey, o.random);
  }

  /**
   * Layout and mac1 (no DH), then mac2 if under load, then the first DH to learn
   * who is calling. The caller checks `initiation.peerPublicKey` against its allow
   * list and only then calls `initiation.accept(...)`.
   */
  consumeInitiation(message: Uint8Array, o: ConsumeInitiationOptions): ConsumeInitiationResult {
    if (!hasPrefix(message, V2MessageType.HANDSHAKE_INITIATION, INITIATION_SIZE)) return { kind: 'drop', reason: 'malformed' };
    const m = Buffer.from(message.buffer, message.byteOffset, message.byteLength);
    if (!this.checker.checkMac1(m)) return { kind: 'drop', reason: 'bad-mac1' };
    const senderIndex = m.readUInt32BE(InitiationOffset.SENDER_INDEX);
    if (o.underLoad && !this.checker.checkMac2(m, o.source, o.now)) {
      return { kind: 'cookie', reply: this.checker.createReply(m, senderIndex, o.source, o.now) };
    }
    const noise = new IKpsk2Responder({ prologue: this.prologue, staticPrivateKey: this.staticPrivateKey });
    let peerPublicKey: Buffer;
    try {
      peerPublicKey = noise.readMessage1Static(m.subarray(InitiationOffset.EPHEMERAL, InitiationOffset.MAC1));
    } catch {
      return { kind: 'drop', reason: 'decrypt' };
    }
    return { kind: 'initiation', initiation: new ReceivedInitiation(this, noise, peerPublicKey, senderIndex) };
  }

  /** Forget an initiator's last timestamp (e.g. when it leaves the allow list). */
  forget(peerPublicKey: Uint8Array): void {
    this.initiators.delete(Buffer.from(peerPublicKey).toString('hex'));
  }

  /** @internal replay and flood check, then record. */
  admit(peerPublicKey: Buffer, timestamp: Buffer, now: number): FailureReason | null {
    const id = peerPublicKey.toString('hex');
    const last = this.initiators.get(id);
    if (last !== undefined) {
      if (Buffer.compare(timestamp, last.timestamp) <= 0) return 'replay';
      if (now - last.consumedAt <= HANDSHAKE_INITIATION_RATE_MS) return 'flood';
    }
    this.initiators.set(id, { timestamp, consumedAt: now });
    return null;
  }
}

export interface AcceptOptions {
  /** This initiator's PSK; omitted = zeros. */
  psk?: Uint8Array;
  /** Our index for this session: random, non-zero, unique among ours. */
  senderIndex: number;
  /** Unix ms (flood limit). */
  now: number;
  /** Only for tests. */
  ephemeralPrivateKey?: Uint8Array;
}

/** An initiation whose sender is known (peerPublicKey) but not yet authenticated as that peer. */
export class ReceivedInitiation {
  private used = false;

  /** @internal */
  constructor(
    private readonly responder: ResponderHandshake,
    private readonly noise: IKpsk2Responder,
    readonly peerPublicKey: Buffer,
    /** The initiator's index: what our response and transport messages carry as receiver index. */
    readonly remoteIndex: number,
  ) {}

  /**
   * The second DH (proves the sender holds peerPublicKey's private key), the
   * timestamp replay check, then the 92-byte response and our transport keys.
   */
  accept(
    o: AcceptOptions,
  ): { ok: true; response: Buffer; keys: TransportKeys; timestamp: Buffer } | { ok: false; reason: FailureReason } {
    if (this.used) throw new HandshakeError('an initiation can be accepted once');
    this.used = true;
    let timestamp: Buffer;
    try {
      timestamp = this.noise.readMessage1Payload();
    } catch {
      this.noise.wipe();
      return { ok: false, reason: 'decrypt' };
    }
    if (timestamp.length !== TIMESTAMP_SIZE) {
      this.noise.wipe();
      return { ok: false, reason: 'malformed' };
    }
    const refused = this.responder.admit(this.peerPublicKey, timestamp, o.now);
    if (refused !== null) {
      this.noise.wipe();
      return { ok: false, reason: refused };
    }
    const response = Buffer.alloc(RESPONSE_SIZE);
    writePrefix(response, V2MessageType.HANDSHAKE_RESPONSE);
    response.writeUInt32BE(o.senderIndex >>> 0, ResponseOffset.SENDER_INDEX);
    response.writeUInt32BE(this.remoteIndex, ResponseOffset.RECEIVER_INDEX);
    this.noise.writeMessage2(EMPTY, o.psk, o.ephemeralPrivateKey).copy(response, ResponseOffset.EPHEMERAL);
    // mac1 keyed by the initiator's key; we hold no cookie from ports, so mac2 stays zero.
    new CookieGenerator(this.peerPublicKey).addMacs(response, o.now);
    const keys = this.noise.split();
    return {
      ok: true,
      response,
      timestamp,
      keys: { ...keys, localIndex: o.senderIndex >>> 0, remoteIndex: this.remoteIndex, isInitiator: false, remotePublicKey: this.peerPublicKey },
    };
  }
}

