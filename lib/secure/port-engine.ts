// The port's side of protocol 2: Noise IKpsk2 initiator that accepts only the
// configured switch key, keepalive pings with RTT, rekey without a gap (the old
// keys keep receiving), dead-switch detection and rejoin with backoff.
import { randomInt } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { BATCH_SIZE, type FrameBatch } from '../core/frames.js';
import { encodeKey, publicKeyOf } from '../crypto/keys.js';
import { CookieGenerator, InitiatorHandshake } from '../crypto/noise.js';
import { PROTOCOL_VERSION_2, REJECT_AFTER_TIME_MS, REKEY_AFTER_TIME_MS, V2MessageType, handshakePrologue, type TransportCipherName } from '../crypto/constants.js';
import { rejoinBackoffMs } from '../protocol/session.js';
import { DEAD_AFTER_MISSED_KEEPALIVES, ETHERNET_HEADER_SIZE, KEEPALIVE_INTERVAL_DEFAULT_S, KEEPALIVE_INTERVAL_MAX_S, KEEPALIVE_INTERVAL_MIN_S } from '../protocol/constants.js';
import type { PortEngine, PortEngineHost, PortEngineStatus } from '../port-engine.js';
import { Keypair } from './keypair.js';
import { Control, LEAVE_PAYLOAD, SESSION_UNKNOWN_SIZE, SESSION_UNKNOWN_TYPE, encodePing } from './control.js';
import { isTransport, openQueued, queueOpen, readU32, sealInto, sealOne, type OpenSink } from './datapath.js';

/** Attempts without any answer before the port says what is probably misconfigured. */
export const SILENT_ATTEMPTS_BEFORE_HINT = 4;
/** A SESSION_UNKNOWN hint starts at most one handshake per this interval (it is unauthenticated). */
export const HINT_HANDSHAKE_INTERVAL_MS = 1000;

export interface SecurePortOptions {
  privateKey: Buffer;
  switchPublicKey: Buffer;
  psk?: Buffer;
  /** Shortened in tests to exercise rekeying. */
  rekeyAfterMs?: number;
  rejectAfterMs?: number;
  /** Transport cipher; must match the switch's (default ChaCha20-Poly1305). */
  cipher?: TransportCipherName;
}

type State = 'idle' | 'handshaking' | 'joined';

export class SecurePortEngine implements PortEngine, OpenSink {
  readonly mode = 'secure' as const;
  private state: State = 'idle';
  private current: Keypair | null = null;
  private previous: Keypair | null = null;
  private handshake: InitiatorHandshake | null = null;
  private readonly cookies: CookieGenerator;
  private readonly rekeyAfterMs: number;
  private readonly rejectAfterMs: number;
  private attempt = 0;
  private silentAttempts = 0;
  private everJoined = false;
  private nextHandshakeAt = Infinity;
  private nextPingAt = Infinity;
  private lastHeard = 0;
  private lastHandshakeAt = 0;
  private lastHintAt = -Infinity;
  /** The switch said it lost our session: the next completed handshake is a rejoin, not a rekey. */
  private sessionLost = false;
  private keepaliveMs = KEEPALIVE_INTERVAL_DEFAULT_S * 1000;
  private pingSeq = 0;
  private pingSentAt = new Map<number, number>();
  private rttMs: number | undefined;
  private rxNow = 0;
  private readonly touched: Keypair[] = [];
  private readonly counters = {
    handshakesSent: 0,
    handshakes: 0,
    rekeys: 0,
    handshakeFailures: 0,
    txNotJoined: 0,
    txOversize: 0,
    dataIn: 0,
    authFailed: 0,
    replayed: 0,
    unknownIndex: 0,
    malformed: 0,
    cookies: 0,
    ignored: 0,
  };

  constructor(
    private readonly host: PortEngineHost,
    private readonly opts: SecurePortOptions,
  ) {
    this.cookies = new CookieGenerator(opts.switchPublicKey);
    this.rekeyAfterMs = opts.rekeyAfterMs ?? REKEY_AFTER_TIME_MS;
    this.rejectAfterMs = Math.max(opts.rejectAfterMs ?? REJECT_AFTER_TIME_MS, this.rekeyAfterMs);
  }

  get isJoined(): boolean {
    return this.state === 'joined' && this.current !== null;
  }

  get publicKey(): string {
    return encodeKey(publicKeyOf(this.opts.privateKey));
  }

  start(now: number): void {
    if (this.state !== 'idle') return;
    this.state = 'handshaking';
    this.attempt = 0;
    this.initiate(now);
  }

  receive(batch: FrameBatch, slots: Uint16Array, n: number, now: number): void {
    const { buf, offsets, lengths } = batch;
    this.rxNow = now;
    const touched = this.touched;
    // Windows of BATCH_SIZE: a keypair's receive scratch holds one window (GRO batches are larger).
    for (let base = 0; base < n; base += BATCH_SIZE) {
      const end = Math.min(n, base + BATCH_SIZE);
      for (let k = base; k < end; k++) {
        const i = slots[k]!;
        const off = offsets[i]!;
        const len = lengths[i]!;
        if (isTransport(buf, off, len)) {
          const kp = this.keypairFor(readU32(buf, off + 4));
          if (kp === null) {
            this.counters.unknownIndex++;
            continue;
          }
          if (kp.rxCount === 0) touched.push(kp);
          if (!queueOpen(kp, buf, off, len, i)) this.counters.replayed++;
          continue;
        }
        this.control(buf.subarray(off, off + len), now);
      }
      for (const kp of touched) openQueued(kp, buf, this);
      touched.length = 0;
    }
  }

  plain(kp: Keypair, _slot: number, buf: Buffer, off: number, len: number): void {
    if (kp !== this.current && kp !== this.previous) return;
    this.lastHeard = this.rxNow;
    if (len >= ETHERNET_HEADER_SIZE) {
      this.counters.dataIn++;
      this.host.deliver(buf, off, len);
      return;
    }
    if (len === 0) return;
    const kind = buf[off]!;
    if ((kind === Control.PONG || kind === Control.PING) && len === 5) {
      const seq = buf.readUInt32BE(off + 1);
      if (kind === Control.PING) {
        this.sendControl(encodePing(Control.PONG, seq));
        return;
      }
      const sent = this.pingSentAt.get(seq);
      if (sent !== undefined) {
        this.rttMs = Math.round((performance.now() - sent) * 1000) / 1000;
        this.pingSentAt.clear();
      }
    } else if (kind === Control.PARAMS && len === 5) {
      const keepaliveS = buf.readUInt16BE(off + 1);
      if (keepaliveS >= KEEPALIVE_INTERVAL_MIN_S && keepaliveS <= KEEPALIVE_INTERVAL_MAX_S) this.keepaliveMs = keepaliveS * 1000;
      this.nextPingAt = Math.min(this.nextPingAt, this.rxNow + this.keepaliveMs);
    } else if (kind === Control.LEAVE && len === 1) {
      this.host.event({ type: 'left-by-switch' });
      this.dropKeys();
      this.beginRejoin(this.rxNow);
    }
  }

  rejected(_kp: Keypair, reason: 'auth' | 'replay'): void {
    if (reason === 'auth') this.counters.authFailed++;
    else this.counters.replayed++;
  }

  transmit(batch: FrameBatch): void {
    const kp = this.current;
    if (kp === null || this.state !== 'joined') {
      this.counters.txNotJoined += batch.count;
      return;
    }
    sealInto(kp, batch, this.host.queue, this.host.switchAddr, this.counters);
  }

  poll(now: number): void {
    if (this.state === 'idle') return;
    const cur = this.current;
    if (cur !== null && now - cur.createdAt >= this.rejectAfterMs) {
      // Keys too old to use: silence until a handshake completes.
      this.host.log.warn('session keys expired before a rekey completed; rejoining', {});
      this.dropKeys();
      this.beginRejoin(now);
    }
    if (this.previous !== null && now - this.previous.createdAt >= this.rejectAfterMs) {
      this.previous.close();
      this.previous = null;
    }
    if (this.state === 'joined' && this.current !== null) {
      if (now - this.lastHeard > DEAD_AFTER_MISSED_KEEPALIVES * this.keepaliveMs + this.keepaliveMs / 2) {
        this.host.event({ type: 'switch-dead', silentMs: now - this.lastHeard });
        this.dropKeys();
        this.beginRejoin(now);
      } else {
        if (now >= this.nextPingAt) this.ping(now);
        if (this.handshake === null && now - this.current.createdAt >= this.rekeyAfterMs) {
          this.attempt = 0;
          this.initiate(now);
        }
      }
    }
    if (this.handshake !== null && now >= this.nextHandshakeAt) this.initiate(now);
  }

  nextTimeout(): number | undefined {
    if (this.state === 'idle') return undefined;
    let t = this.nextHandshakeAt;
    if (this.state === 'joined' && this.current !== null) {
      t = Math.min(t, this.nextPingAt, this.lastHeard + DEAD_AFTER_MISSED_KEEPALIVES * this.keepaliveMs + this.keepaliveMs / 2 + 1);
      if (this.handshake === null) t = Math.min(t, this.current.createdAt + this.rekeyAfterMs);
      t = Math.min(t, this.current.createdAt + this.rejectAfterMs);
    }
    return Number.isFinite(t) ? t : undefined;
  }

  leave(now: number): void {
    if (this.current !== null) this.sendControl(LEAVE_PAYLOAD);
    this.dropKeys();
    this.handshake = null;
    this.state = 'idle';
    void now;
  }

  status(now: number): PortEngineStatus {
    return {
      state: this.state,
      session: this.current ? `${hex(this.current.localIndex)}/${hex(this.current.remoteIndex)}` : '-',
      rttMs: this.rttMs,
      ...(this.lastHandshakeAt > 0 ? { lastHandshakeS: Math.round((now - this.lastHandshakeAt) / 100) / 10 } : {}),
      counters: { ...this.counters },
    };
  }

  // ------------------------------------------------------------------ control plane

  private control(msg: Buffer, now: number): void {
    if (msg.length < 4) {
      this.counters.malformed++;
      return;
    }
    const version = msg[0]!;
    const type = msg[1]!;
    if (version !== PROTOCOL_VERSION_2) {
      if (type === 0xff && msg.length === 4) {
        this.host.event({
          type: 'incompatible-version',
          message: `incompatible version: the switch speaks protocol ${msg[2]}..${msg[3]}, this vport speaks ${PROTOCOL_VERSION_2} (encrypted): ${msg[3] === 1 ? 'the switch runs --insecure: give both ends keys, or both --insecure' : 'upgrade one side'}`,
        });
      } else {
        this.counters.malformed++;
      }
      return;
    }
    if (type === V2MessageType.HANDSHAKE_RESPONSE && this.handshake !== null) {
      const res = this.handshake.consumeResponse(msg);
      if (!res.ok) {
        this.counters.handshakeFailures++;
        if (res.reason === 'decrypt') {
          this.host.event({
            type: 'handshake-failed',
            message: 'the switch answered but its handshake response does not authenticate: the PSK differs from the switch\'s (--psk), or the response was tampered with',
          });
        }
        return;
      }
      const kp = new Keypair(res.keys, now, this.opts.cipher);
      if (this.previous !== null) this.previous.close();
      this.previous = this.current;
      this.current = kp;
      this.handshake = null;
      this.nextHandshakeAt = Infinity;
      this.lastHeard = now;
      this.lastHandshakeAt = now;
      this.silentAttempts = 0;
      this.counters.handshakes++;
      const wasJoined = this.state === 'joined' && this.previous !== null && !this.sessionLost;
      this.sessionLost = false;
      this.state = 'joined';
      // The first message under the new keys confirms them to the switch.
      this.ping(now);
      if (wasJoined) {
        this.counters.rekeys++;
        this.host.event({ type: 'rekeyed', session: hex(kp.localIndex) });
      } else {
        this.everJoined = true;
        this.host.event({ type: 'joined', session: hex(kp.localIndex), attempts: this.attempt, keepaliveMs: this.keepaliveMs });
      }
      return;
    }
    if (type === V2MessageType.COOKIE_REPLY && this.handshake !== null) {
      if (this.handshake.consumeCookieReply(msg, now)) this.counters.cookies++;
      else this.counters.ignored++;
      return;
    }
    if (type === SESSION_UNKNOWN_TYPE && msg.length === SESSION_UNKNOWN_SIZE) {
      // Unauthenticated: it can only make us handshake sooner, at most once a second.
      const index = msg.readUInt32BE(4);
      if (this.current !== null && index === this.current.remoteIndex && this.handshake === null && now - this.lastHintAt >= HINT_HANDSHAKE_INTERVAL_MS) {
        this.lastHintAt = now;
        this.sessionLost = true;
        this.host.log.info('the switch does not know our session (restarted?): handshaking again', {});
        this.attempt = 0;
        this.initiate(now);
      } else {
        this.counters.ignored++;
      }
      return;
    }
    this.counters.malformed++;
  }

  private initiate(now: number): void {
    if (this.handshake !== null) {
      this.silentAttempts++;
      if (this.silentAttempts === SILENT_ATTEMPTS_BEFORE_HINT && !this.everJoined) {
        this.host.event({
          type: 'handshake-failed',
          message: `no handshake response from the switch after ${this.silentAttempts} attempts: check that --switch-key is the switch's public key (etherlink pubkey on its key file), that this port's key ${this.publicKey} is in the switch's allow file, that both use the same --cipher and that the switch is reachable`,
        });
      }
    }
    const { message, handshake } = InitiatorHandshake.createInitiation({
      staticPrivateKey: this.opts.privateKey,
      responderPublicKey: this.opts.switchPublicKey,
      senderIndex: this.freshIndex(),
      now,
      cookies: this.cookies,
      prologue: handshakePrologue(this.opts.cipher),
      ...(this.opts.psk ? { psk: this.opts.psk } : {}),
    });
    this.handshake = handshake;
    this.counters.handshakesSent++;
    this.host.send(message);
    this.nextHandshakeAt = now + rejoinBackoffMs(this.attempt++, Math.random());
  }

  private ping(now: number): void {
    const seq = ++this.pingSeq >>> 0;
    this.pingSentAt.set(seq, performance.now());
    if (this.pingSentAt.size > 8) this.pingSentAt.delete(this.pingSentAt.keys().next().value!);
    this.sendControl(encodePing(Control.PING, seq));
    this.nextPingAt = now + this.keepaliveMs;
  }

  private sendControl(payload: Buffer): void {
    if (this.current === null) return;
    this.host.send(sealOne(this.current, payload));
  }

  private beginRejoin(now: number): void {
    this.state = 'handshaking';
    this.attempt = 0;
    this.handshake = null;
    this.nextPingAt = Infinity;
    this.initiate(now);
  }

  private dropKeys(): void {
    this.current?.close();
    this.previous?.close();
    this.current = this.previous = null;
  }

  private keypairFor(index: number): Keypair | null {
    if (this.current !== null && this.current.localIndex === index) return this.current;
    if (this.previous !== null && this.previous.localIndex === index) return this.previous;
    return null;
  }

  private freshIndex(): number {
    return randomInt(1, 0x1_0000_0000);
  }
}

function hex(n: number): string {
  return n.toString(16).padStart(8, '0');
}
