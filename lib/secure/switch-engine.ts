// The switch's side of protocol 2: Noise IKpsk2 responder with an allow list,
// cookie replies under load, per-source handshake rate limits, keypairs per
// port with rekey and expiry, and the encrypted data path. Only authenticated
// datagrams create or change state.
import { randomInt } from 'node:crypto';
import { BATCH_SIZE, type FrameBatch } from '../core/frames.js';
import { ADDR_SLOT } from '../io/native.js';
import type { UdpSocket } from '../io/udp.js';
import { addressEquals, formatAddress } from '../io/address.js';
import { ResponderHandshake } from '../crypto/noise.js';
import { encodeKey, type AllowEntry } from '../crypto/keys.js';
import {
  PROTOCOL_VERSION_2,
  REJECT_AFTER_TIME_MS,
  handshakePrologue,
  type TransportCipherName,
  REKEY_TIMEOUT_MS,
  V2MessageType,
} from '../crypto/constants.js';
import { ReplyBudget } from '../protocol/session.js';
import { encodeVersionUnsupported } from '../protocol/wire.js';
import { ETHERNET_HEADER_SIZE, REPLY_BUDGET_BURST, REPLY_BUDGET_PER_SECOND } from '../protocol/constants.js';
import type { EnginePeer, SessionStatus, SwitchEngine, SwitchEngineHost } from '../switch-engine.js';
import { Keypair } from './keypair.js';
import { Control, LEAVE_PAYLOAD, encodeParams, encodePing, encodeSessionUnknown } from './control.js';
import { isTransport, openQueued, queueOpen, readU32, sealInto, sealOne, type OpenSink } from './datapath.js';

/** Handshakes per second above which initiations must carry a valid cookie (mac2). */
export const UNDER_LOAD_HANDSHAKES_PER_S = 64;
/** Initiations each source address may have processed per second (WireGuard: 20/s, burst 5). */
export const HANDSHAKES_PER_SOURCE_PER_S = 20;
export const HANDSHAKE_SOURCE_BURST = 5;
/** Sources remembered by the rate limiter; beyond this the table is reset (an attack, not a crowd). */
export const RATE_LIMIT_TABLE_MAX = 8192;
/** A responder keypair the port never used is dropped after this (and the reason logged). */
export const CONFIRM_TIMEOUT_MS = 3 * REKEY_TIMEOUT_MS;
/** Unconfirmed handshakes held at once, across all ports. */
export const MAX_PENDING_HANDSHAKES = 1024;
/** Noisy-but-useful log lines about unauthenticated input, per second. */
const LOG_BUDGET_PER_S = 5;

export interface SecureSwitchOptions {
  privateKey: Buffer;
  /** Admitted ports: public key and an optional name for logs and status. */
  allow: readonly AllowEntry[];
  psk?: Buffer;
  keepaliveS: number;
  portTimeoutS: number;
  maxPorts?: number;
  /** Override REJECT_AFTER_TIME (tests shorten it with the port's rekey time). */
  rejectAfterMs?: number;
  /** Transport cipher; every port must use the same (default ChaCha20-Poly1305). */
  cipher?: TransportCipherName;
}

class SecurePeer implements EnginePeer {
  readonly endpoint = Buffer.alloc(ADDR_SLOT);
  lastSeen: number;
  joined = false;
  current: Keypair | null = null;
  previous: Keypair | null = null;
  next: Keypair | null = null;
  dataIn = 0;
  lastHandshake = 0;
  rekeys = 0;
  /** When `next` went from none to pending: a retried initiation replaces `next`, not this clock. */
  unconfirmedSince = 0;
  constructor(
    readonly id: number,
    public name: string,
    readonly publicKey: string,
    readonly keyHex: string,
    readonly joinedAt: number,
    public socket: UdpSocket,
  ) {
    this.lastSeen = joinedAt;
  }
}

interface IndexEntry {
  peer: SecurePeer;
  kp: Keypair;
}

/** Token bucket per source address, bounded: it is the only state unauthenticated input can create. */
class SourceLimiter {
  private readonly table = new Map<string, ReplyBudget>();
  allow(key: string, now: number): boolean {
    let b = this.table.get(key);
    if (b === undefined) {
      if (this.table.size >= RATE_LIMIT_TABLE_MAX) this.table.clear();
      b = new ReplyBudget(HANDSHAKES_PER_SOURCE_PER_S, HANDSHAKE_SOURCE_BURST);
      this.table.set(key, b);
    }
    return b.take(now);
  }
  clear(): void {
    this.table.clear();
  }
}

export class SecureSwitchEngine implements SwitchEngine, OpenSink {
  readonly mode = 'secure' as const;
  private readonly responder: ResponderHandshake;
  private allow = new Map<string, AllowEntry>();
  private readonly peers = new Map<string, SecurePeer>();
  private readonly byIndex = new Map<number, IndexEntry>();
  private readonly touched: IndexEntry[] = [];
  private readonly limiter = new SourceLimiter();
  // Separate budgets, so a flood of junk transport can't silence version answers, or the reverse.
  private readonly replyBudget = new ReplyBudget(REPLY_BUDGET_PER_SECOND, REPLY_BUDGET_BURST);
  private readonly versionBudget = new ReplyBudget(REPLY_BUDGET_PER_SECOND, REPLY_BUDGET_BURST);
  private readonly logBudget = new ReplyBudget(LOG_BUDGET_PER_S, LOG_BUDGET_PER_S);
  private readonly rejectAfterMs: number;
  private handshakesThisSecond = 0;
  private pending = 0;
  private nextId = 1;
  // Per receive batch: where the datagrams came from.
  private rxAddrs: Buffer = Buffer.alloc(0);
  private rxSocket: UdpSocket | null = null;
  private rxNow = 0;
  readonly stats = {
    handshakes: 0,
    handshakeFailures: 0,
    rekeys: 0,
    cookiesSent: 0,
    rateLimited: 0,
    badMac1: 0,
    unlisted: 0,
    replayedInitiations: 0,
    unconfirmed: 0,
    dataIn: 0,
    authFailed: 0,
    replayed: 0,
    unknownIndex: 0,
    malformed: 0,
    badVersion: 0,
    noSession: 0,
    txOversize: 0,
    roams: 0,
    leaves: 0,
    timeouts: 0,
  };

  constructor(
    private readonly host: SwitchEngineHost,
    private readonly defaultSocket: () => UdpSocket,
    private readonly opts: SecureSwitchOptions,
  ) {
    this.responder = new ResponderHandshake({ staticPrivateKey: opts.privateKey, prologue: handshakePrologue(opts.cipher) });
    this.rejectAfterMs = opts.rejectAfterMs ?? REJECT_AFTER_TIME_MS;
    this.setAllowList(opts.allow);
  }

  get publicKey(): string {
    return encodeKey(this.responder.publicKey);
  }

  get size(): number {
    let n = 0;
    for (const p of this.peers.values()) if (p.joined) n++;
    return n;
  }

  /** Replace the allow list (SIGHUP). Ports whose key is gone are told goodbye and removed. Returns their names. */
  setAllowList(entries: readonly AllowEntry[]): string[] {
    this.allow = new Map(entries.map((e) => [e.publicKey.toString('hex'), e]));
    const removed: string[] = [];
    for (const [hexKey, peer] of this.peers) {
      const entry = this.allow.get(hexKey);
      if (entry === undefined) {
        removed.push(peer.name);
        this.dropPeer(peer, 'removed from the allow file', true);
      } else if (entry.name !== undefined) {
        peer.name = entry.name;
      }
    }
    return removed;
  }

  receive(socket: UdpSocket, batch: FrameBatch, addrs: Buffer, now: number): void {
    const { buf, offsets, lengths, count } = batch;
    this.rxAddrs = addrs;
    this.rxSocket = socket;
    this.rxNow = now;
    // Windows of BATCH_SIZE: each keypair's receive scratch holds one window (GRO batches are larger).
    for (let base = 0; base < count; base += BATCH_SIZE) {
      const end = Math.min(count, base + BATCH_SIZE);
      for (let i = base; i < end; i++) {
        const off = offsets[i]!;
        const len = lengths[i]!;
        if (isTransport(buf, off, len)) {
          const e = this.byIndex.get(readU32(buf, off + 4));
          if (e === undefined) {
            this.stats.unknownIndex++;
            // A port whose switch restarted learns it at once (see PROTOCOL.md: SESSION_UNKNOWN).
            if (this.replyBudget.take(now)) this.host.sendTo(socket, encodeSessionUnknown(readU32(buf, off + 4)), addrs.subarray(i * ADDR_SLOT, (i + 1) * ADDR_SLOT));
            continue;
          }
          if (e.kp.rxCount === 0) this.touched.push(e);
          if (!queueOpen(e.kp, buf, off, len, i)) this.stats.replayed++;
          continue;
        }
        this.control(socket, buf, off, len, addrs, i, now);
      }
      for (const e of this.touched) openQueued(e.kp, buf, this);
      this.touched.length = 0;
    }
  }

  /** OpenSink: an authentic, fresh datagram. */
  plain(kp: Keypair, slot: number, buf: Buffer, off: number, len: number): void {
    const e = this.byIndex.get(kp.localIndex);
    if (e === undefined) return;
    const peer = e.peer;
    peer.lastSeen = this.rxNow;
    if (!kp.confirmed) this.confirm(peer, kp);
    // Roaming: only an authenticated datagram moves the endpoint.
    if (!addressEquals(peer.endpoint, 0, this.rxAddrs, slot * ADDR_SLOT)) {
      const from = formatAddress(peer.endpoint);
      this.rxAddrs.copy(peer.endpoint, 0, slot * ADDR_SLOT, (slot + 1) * ADDR_SLOT);
      if (this.rxSocket) peer.socket = this.rxSocket;
      this.stats.roams++;
      this.host.log.info('port roamed', { port: peer.name, from, to: formatAddress(peer.endpoint) });
    }
    if (len >= ETHERNET_HEADER_SIZE) {
      this.stats.dataIn++;
      peer.dataIn++;
      this.host.deliver(peer, buf, off, len);
    } else if (len > 0) {
      this.onControl(peer, kp, buf[off]!, buf, off, len);
    }
  }

  rejected(_kp: Keypair, reason: 'auth' | 'replay'): void {
    if (reason === 'auth') this.stats.authFailed++;
    else this.stats.replayed++;
  }

  transmit(peer: EnginePeer, batch: FrameBatch): void {
    const p = peer as SecurePeer;
    const kp = p.current;
    if (kp === null || !kp.confirmed) {
      this.stats.noSession += batch.count;
      return;
    }
    sealInto(kp, batch, this.host.queueFor(p.socket), p.endpoint, this.stats);
  }

  tick(now: number): void {
    this.handshakesThisSecond = 0;
    const timeoutMs = this.opts.portTimeoutS * 1000;
    for (const peer of [...this.peers.values()]) {
      // Measured from the first unconfirmed handshake: a port with the wrong PSK retries more
      // often than CONFIRM_TIMEOUT_MS (backoff caps at 10 s), so each `next` alone never ages out.
      if (peer.next !== null && now - peer.unconfirmedSince > CONFIRM_TIMEOUT_MS) {
        this.stats.unconfirmed++;
        this.host.log.warn('handshake not confirmed: the port never used the new keys (a PSK mismatch?)', {
          port: peer.name,
          address: formatAddress(peer.endpoint),
          waited: `${CONFIRM_TIMEOUT_MS / 1000}s`,
        });
        this.setNext(peer, null);
      }
      if (peer.previous !== null && now - peer.previous.createdAt > this.rejectAfterMs) {
        this.retire(peer.previous);
        peer.previous = null;
      }
      if (peer.current !== null && now - peer.current.createdAt > this.rejectAfterMs) {
        this.retire(peer.current);
        peer.current = null;
      }
      if (peer.joined && now - peer.lastSeen > timeoutMs) {
        this.stats.timeouts++;
        this.dropPeer(peer, `timeout after ${((now - peer.lastSeen) / 1000).toFixed(1)} s of silence`, false);
      } else if (!peer.joined && peer.current === null && peer.next === null) {
        this.dropPeer(peer, 'never confirmed', false);
      }
    }
  }

  close(_now: number): void {
    for (const peer of [...this.peers.values()]) this.dropPeer(peer, 'switch-shutdown', true);
  }

  sessions(now: number): SessionStatus[] {
    return [...this.peers.values()]
      .filter((p) => p.joined)
      .map((p) => ({
        name: p.name,
        publicKey: p.publicKey,
        address: formatAddress(p.endpoint),
        joinedAt: new Date(p.joinedAt).toISOString(),
        lastSeenS: Math.round((now - p.lastSeen) / 100) / 10,
        lastHandshakeS: Math.round((now - p.lastHandshake) / 100) / 10,
        rekeys: p.rekeys,
        id: p.id,
      }));
  }

  counters(): Record<string, number> {
    return { ...this.stats, ports: this.size, pendingHandshakes: this.pending };
  }

  // ------------------------------------------------------------------ control plane

  private control(socket: UdpSocket, buf: Buffer, off: number, len: number, addrs: Buffer, slot: number, now: number): void {
    const from = addrs.subarray(slot * ADDR_SLOT, (slot + 1) * ADDR_SLOT);
    if (len < 4) {
      this.stats.malformed++;
      return;
    }
    const version = buf[off]!;
    const type = buf[off + 1]!;
    if (version !== PROTOCOL_VERSION_2) {
      this.stats.badVersion++;
      // Answer (within budget, never larger than the trigger) so the port can say why.
      if (type !== 0xff && this.versionBudget.take(now)) {
        this.host.sendTo(socket, encodeVersionUnsupported(PROTOCOL_VERSION_2, PROTOCOL_VERSION_2, PROTOCOL_VERSION_2), Buffer.from(from));
      }
      if (this.logBudget.take(now)) {
        this.host.log.warn('incompatible version', {
          address: formatAddress(from),
          theirs: version,
          ours: PROTOCOL_VERSION_2,
          hint: version === 1 ? 'the port runs --insecure (protocol 1); this switch requires keys: give both ends keys, or both --insecure' : 'upgrade one side',
        });
      }
      return;
    }
    if (type === V2MessageType.HANDSHAKE_INITIATION) {
      this.initiation(socket, buf.subarray(off, off + len), from, now);
      return;
    }
    this.stats.malformed++;
  }

  private initiation(socket: UdpSocket, message: Buffer, from: Buffer, now: number): void {
    const sourceKey = from.toString('hex', 0, 16); // per host, whatever its port
    if (!this.limiter.allow(sourceKey, now)) {
      this.stats.rateLimited++;
      return;
    }
    this.handshakesThisSecond++;
    const underLoad = this.handshakesThisSecond > UNDER_LOAD_HANDSHAKES_PER_S || this.pending > MAX_PENDING_HANDSHAKES / 2;
    const res = this.responder.consumeInitiation(message, { source: from.subarray(0, 18), underLoad, now });
    if (res.kind === 'cookie') {
      this.stats.cookiesSent++;
      this.host.sendTo(socket, res.reply, Buffer.from(from));
      return;
    }
    if (res.kind === 'drop') {
      if (res.reason === 'bad-mac1') {
        this.stats.badMac1++;
        if (this.logBudget.take(now)) {
          this.host.log.warn('dropped a handshake not meant for this switch key (bad mac1): junk, or a port whose --switch-key is not ours', {
            address: formatAddress(from),
            ourKey: this.publicKey,
          });
        }
      } else {
        this.stats.handshakeFailures++;
        if (this.logBudget.take(now)) {
          this.host.log.warn('handshake failed', {
            address: formatAddress(from),
            reason: res.reason,
            ...(res.reason === 'decrypt' ? { hint: 'mac1 matched our key but the handshake does not decrypt: the port uses another --cipher, or the initiation was tampered with' } : {}),
          });
        }
      }
      return;
    }
    const init = res.initiation;
    const keyHex = init.peerPublicKey.toString('hex');
    const entry = this.allow.get(keyHex);
    if (entry === undefined) {
      this.stats.unlisted++;
      if (this.logBudget.take(now)) {
        this.host.log.warn('handshake from a key not in the allow file: add it and send SIGHUP to admit it', {
          key: encodeKey(init.peerPublicKey),
          address: formatAddress(from),
        });
      }
      return;
    }
    if (this.pending >= MAX_PENDING_HANDSHAKES) {
      this.stats.rateLimited++;
      return;
    }
    const localIndex = this.freshIndex();
    const accepted = init.accept({ senderIndex: localIndex, now, ...(this.opts.psk ? { psk: this.opts.psk } : {}) });
    if (!accepted.ok) {
      if (accepted.reason === 'replay' || accepted.reason === 'flood') this.stats.replayedInitiations++;
      else this.stats.handshakeFailures++;
      if (this.logBudget.take(now)) {
        this.host.log.info('initiation refused', {
          port: entry.name ?? encodeKey(init.peerPublicKey).slice(0, 8),
          reason: accepted.reason,
          ...(accepted.reason === 'replay' ? { hint: 'its timestamp is not newer than the last accepted: a replayed initiation, or the port\'s clock went back' } : {}),
        });
      }
      return;
    }
    let peer = this.peers.get(keyHex);
    if (peer === undefined) {
      if (this.size >= (this.opts.maxPorts ?? Infinity)) {
        if (this.logBudget.take(now)) this.host.log.warn('switch full: handshake refused', { key: encodeKey(init.peerPublicKey), max: this.opts.maxPorts });
        accepted.keys.sending.fill(0);
        accepted.keys.receiving.fill(0);
        return;
      }
      peer = new SecurePeer(this.nextId++, entry.name ?? encodeKey(init.peerPublicKey).slice(0, 8), encodeKey(init.peerPublicKey), keyHex, now, socket);
      this.peers.set(keyHex, peer);
    }
    // The initiation proved the key (its timestamp decrypts only with it): reply where it came from.
    from.copy(peer.endpoint);
    peer.socket = socket;
    const kp = new Keypair(accepted.keys, now, this.opts.cipher);
    if (peer.next === null) peer.unconfirmedSince = now;
    this.setNext(peer, kp);
    peer.lastHandshake = now;
    this.byIndex.set(kp.localIndex, { peer, kp });
    this.stats.handshakes++;
    this.host.sendTo(socket, accepted.response, peer.endpoint);
  }

  /** The port used keys from our response: they become current; the old ones stay for receiving until they expire. */
  private confirm(peer: SecurePeer, kp: Keypair): void {
    kp.confirmed = true;
    if (peer.next === kp) this.setNext(peer, null, false);
    if (peer.previous !== null) this.retire(peer.previous);
    peer.previous = peer.current;
    peer.current = kp;
    this.sendControl(peer, encodeParams(this.opts.keepaliveS, this.opts.portTimeoutS));
    if (!peer.joined) {
      // Two new ports may have handshaken for the last free place: the first to confirm gets it.
      if (this.size >= (this.opts.maxPorts ?? Infinity)) {
        this.host.log.warn('switch full: port refused at confirmation', { port: peer.name, max: this.opts.maxPorts });
        this.dropPeer(peer, 'switch full', true);
        return;
      }
      peer.joined = true;
      this.host.joined(peer, {});
    } else {
      peer.rekeys++;
      this.stats.rekeys++;
      this.host.log.debug('port rekeyed', { port: peer.name });
    }
  }

  private onControl(peer: SecurePeer, _kp: Keypair, kind: number, buf: Buffer, off: number, len: number): void {
    if (kind === Control.PING && len === 5) {
      this.sendControl(peer, encodePing(Control.PONG, buf.readUInt32BE(off + 1)));
    } else if (kind === Control.LEAVE && len === 1) {
      this.stats.leaves++;
      this.dropPeer(peer, 'leave', false);
    }
  }

  private sendControl(peer: SecurePeer, payload: Buffer): void {
    const kp = peer.current;
    if (kp === null || !kp.confirmed) return;
    this.host.sendTo(peer.socket, sealOne(kp, payload), peer.endpoint);
  }

  private dropPeer(peer: SecurePeer, reason: string, sayGoodbye: boolean): void {
    if (sayGoodbye) this.sendControl(peer, LEAVE_PAYLOAD);
    this.setNext(peer, null);
    for (const kp of [peer.current, peer.previous]) if (kp !== null) this.retire(kp);
    peer.current = peer.previous = null;
    this.peers.delete(peer.keyHex);
    if (peer.joined) {
      peer.joined = false;
      this.host.left(peer, reason);
    }
  }

  /** The unconfirmed keypair, with the pending count kept in step; the old one is retired unless it was promoted. */
  private setNext(peer: SecurePeer, kp: Keypair | null, retireOld = true): void {
    if (peer.next !== null) {
      this.pending--;
      if (retireOld) this.retire(peer.next);
    }
    peer.next = kp;
    if (kp !== null) this.pending++;
  }

  private retire(kp: Keypair): void {
    this.byIndex.delete(kp.localIndex);
    kp.close();
  }

  private freshIndex(): number {
    for (;;) {
      const i = randomInt(1, 0x1_0000_0000);
      if (i !== 0 && !this.byIndex.has(i)) return i;
    }
  }
}

