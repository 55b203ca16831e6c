// The handshake, sans-IO: the Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s core
// (parameterizable, test-vector exact) and, on top, WireGuard's messages with
// TAI64N timestamps, mac1/mac2 (lib/protocol/cookie.ts) and our extensions.
import type { KeyObject } from 'node:crypto';
import { generateEphemeral, privateKeyObject, publicKeyOf } from '../crypto/keys.js';
import { aeadOpen, aeadSeal, dh, hash, handshakeError, kdf } from '../crypto/primitives.js';
import { AEAD_TAG_SIZE, HASH_SIZE, KEY_SIZE } from '../crypto/constants.js';
import {
  COOKIE_REPLY_SIZE,
  CookieReplyOffset,
  ETHERLINK_IDENTIFIER,
  HANDSHAKE_INITIATION_RATE_MS,
  INITIATION_MAX_SIZE,
  INSECURE_SWITCH_KEY_SEED,
  INITIATION_SIZE,
  InitiationOffset,
  MACS_SIZE,
  MessageType,
  NOISE_CONSTRUCTION,
  RESPONSE_SIZE,
  ResponseOffset,
  TAI64_EPOCH,
  TAI64N_WHITENER_MASK,
  TIMESTAMP_SIZE,
} from './constants.js';
import { CookieChecker, CookieGenerator } from './cookie.js';
import { hasPrefix, writePrefix } from './wire.js';
import { EtherlinkError } from '../core/errors.js';

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
    if (pt === null) throw handshakeError('handshake message failed authentication');
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
  /** The KeyObject the DHs use; it goes with the handshake object. */
  key: KeyObject;
}

function ephemeral(privateKey: Uint8Array | undefined): Ephemeral {
  if (privateKey === undefined) return generateEphemeral();
  return { privateKey: Buffer.from(privateKey), publicKey: publicKeyOf(privateKey), key: privateKeyObject(privateKey) };
}

function checkKey(key: Uint8Array, what: string): void {
  if (key.length !== KEY_SIZE) throw new EtherlinkError('ERR_INVALID_KEY', `${what} must be ${KEY_SIZE} bytes, got ${key.length}`);
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
 * One object per handshake attempt; it throws ERR_HANDSHAKE and must then be dropped.
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
    sym.mixKey(dh(this.e.key, this.rs)); // es
    const encStatic = sym.encryptAndHash(publicKeyOf(this.s));
    sym.mixKey(dh(this.s, this.rs)); // ss
    const encPayload = sym.encryptAndHash(payload);
    return Buffer.concat([this.e.publicKey, encStatic, encPayload]);
  }

  /**
   * Message 2 -> its payload; throws ERR_HANDSHAKE if it does not authenticate,
   * and then leaves the state untouched so a forged response can't spoil the
   * handshake for the genuine one.
   */
  readMessage2(message: Uint8Array): Buffer {
    if (this.step !== 1) throw handshakeError('handshake used out of order or after failure');
    if (message.length < KEY_SIZE + AEAD_TAG_SIZE) throw handshakeError('handshake response too short');
    const sym = this.sym.clone();
    const re = message.subarray(0, KEY_SIZE);
    sym.mixHash(re);
    sym.mixKey(re);
    sym.mixKey(dh(this.e.key, re)); // ee
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
    if (this.step !== step) throw handshakeError('handshake used out of order or after failure');
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
    if (message.length < KEY_SIZE + ENCRYPTED_STATIC_SIZE + AEAD_TAG_SIZE) throw handshakeError('handshake initiation too short');
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
    sym.mixKey(dh(this.e.key, this.re!)); // ee
    sym.mixKey(dh(this.e.key, this.rs!)); // se
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
    if (this.step !== step) throw handshakeError('handshake used out of order or after failure');
  }
}

// ================================================================ WireGuard layer

let insecureKey: { privateKey: Buffer; publicKey: Buffer } | undefined;

/**
 * The published static key of every --insecure switch (BLAKE2s-256 of
 * INSECURE_SWITCH_KEY_SEED): a port finds such a switch without --switch-key,
 * and anyone can impersonate it. That is what --insecure means.
 */
export function insecureSwitchKey(): { privateKey: Buffer; publicKey: Buffer } {
  if (insecureKey === undefined) {
    const privateKey = hash(Buffer.from(INSECURE_SWITCH_KEY_SEED));
    insecureKey = { privateKey, publicKey: publicKeyOf(privateKey) };
  }
  return { privateKey: Buffer.from(insecureKey.privateKey), publicKey: Buffer.from(insecureKey.publicKey) };
}

/** TAI64N of a Unix time in milliseconds, nanoseconds whitened as wireguard-go does. */
export function tai64n(unixMs: number): Buffer {
  const out = Buffer.alloc(TIMESTAMP_SIZE);
  const seconds = Math.floor(unixMs / 1000);
  out.writeBigUInt64BE(TAI64_EPOCH + BigInt(seconds), 0);
  const nanos = Math.floor((unixMs - seconds * 1000) * 1e6);
  out.writeUInt32BE((nanos & ~TAI64N_WHITENER_MASK) >>> 0, 8);
  return out;
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
  | 'decrypt' // Noise authentication failed (wrong key, wrong PSK or cipher, tampering)
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
  /** Encoded extensions (lib/protocol/wire.ts encodeExtensions) sent encrypted after the timestamp. */
  extensions?: Uint8Array;
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

  /** Build an initiation (148 bytes plus the extensions). Send it; keep the handshake for the response. */
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
    const extensions = o.extensions ?? EMPTY;
    const message = Buffer.alloc(INITIATION_SIZE + extensions.length);
    if (message.length > INITIATION_MAX_SIZE) throw new EtherlinkError('ERR_OUT_OF_RANGE', `initiation extensions too long (${extensions.length} bytes)`);
    writePrefix(message, 0, MessageType.HANDSHAKE_INITIATION);
    message.writeUInt32BE(o.senderIndex >>> 0, InitiationOffset.SENDER_INDEX);
    const payload = Buffer.concat([tai64n(o.now), extensions]);
    noise.writeMessage1(payload).copy(message, InitiationOffset.EPHEMERAL);
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
    if (message.length !== RESPONSE_SIZE || !hasPrefix(message, 0, message.length, MessageType.HANDSHAKE_RESPONSE)) return { ok: false, reason: 'malformed' };
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
    if (message.length !== COOKIE_REPLY_SIZE || !hasPrefix(message, 0, message.length, MessageType.COOKIE_REPLY)) return false;
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

/** Whether `message` has the size and prefix of an initiation (no crypto). */
export function isInitiation(message: Uint8Array): boolean {
  return message.length >= INITIATION_SIZE && message.length <= INITIATION_MAX_SIZE && hasPrefix(message, 0, message.length, MessageType.HANDSHAKE_INITIATION);
}

/**
 * The switch's side: one object for our static key, holding the cookie secret and,
 * per initiator that was accepted, the last timestamp (so the map only grows with
 * the initiators that proved their key, never with unauthenticated input).
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
    if (!isInitiation(message)) return { kind: 'drop', reason: 'malformed' };
    const m = Buffer.from(message.buffer, message.byteOffset, message.byteLength);
    if (!this.checker.checkMac1(m)) return { kind: 'drop', reason: 'bad-mac1' };
    const senderIndex = m.readUInt32BE(InitiationOffset.SENDER_INDEX);
    if (o.underLoad && !this.checker.checkMac2(m, o.source, o.now)) {
      return { kind: 'cookie', reply: this.checker.createReply(m, senderIndex, o.source, o.now) };
    }
    const noise = new IKpsk2Responder({ prologue: this.prologue, staticPrivateKey: this.staticPrivateKey });
    let peerPublicKey: Buffer;
    try {
      peerPublicKey = noise.readMessage1Static(m.subarray(InitiationOffset.EPHEMERAL, m.length - MACS_SIZE));
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
   * `extensions` are the bytes after the timestamp, authenticated with it.
   */
  accept(
    o: AcceptOptions,
  ): { ok: true; response: Buffer; keys: TransportKeys; timestamp: Buffer; extensions: Buffer } | { ok: false; reason: FailureReason } {
    if (this.used) throw handshakeError('an initiation can be accepted once');
    this.used = true;
    let payload: Buffer;
    try {
      payload = this.noise.readMessage1Payload();
    } catch {
      this.noise.wipe();
      return { ok: false, reason: 'decrypt' };
    }
    if (payload.length < TIMESTAMP_SIZE) {
      this.noise.wipe();
      return { ok: false, reason: 'malformed' };
    }
    const timestamp = payload.subarray(0, TIMESTAMP_SIZE);
    const refused = this.responder.admit(this.peerPublicKey, timestamp, o.now);
    if (refused !== null) {
      this.noise.wipe();
      return { ok: false, reason: refused };
    }
    const response = Buffer.alloc(RESPONSE_SIZE);
    writePrefix(response, 0, MessageType.HANDSHAKE_RESPONSE);
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
      extensions: payload.subarray(TIMESTAMP_SIZE),
      keys: { ...keys, localIndex: o.senderIndex >>> 0, remoteIndex: this.remoteIndex, isInitiator: false, remotePublicKey: this.peerPublicKey },
    };
  }
}
