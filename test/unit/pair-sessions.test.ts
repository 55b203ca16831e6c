// Unit tests of lib/protocol/pair-sessions.ts: ports' end-to-end sessions over
// a tiny in-memory switch that relays the handshake (PAIR_SEND -> PAIR_RECV)
// and routes PAIR_DATA by member id, as the real one does, unopened. Covers
// the way up, what goes through the switch instead, the receiver's checks
// (source owned, destination here, NOT_HERE), tampering, replay, a handshake
// from another key than the switch vouched for, PEER GONE, LEAVE, retries and
// the session limit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BATCH_SIZE, MutableFrameBatch, batchToBuffers, buffersToBatch } from '../../lib/core/frames.js';
import { BROADCAST_MAC, buildFrame } from '../../lib/core/ethernet.js';
import { generateKeyPair, type KeyPair } from '../../lib/crypto/keys.js';
import { encodeAddress, formatAddress } from '../../lib/io/address.js';
import { TxQueue } from '../../lib/io/tx-queue.js';
import { MemorySocket } from '../../lib/io/memory-socket.js';
import {
  DEFAULT_CIPHER,
  LongControl,
  MessageType,
  NatMapping,
  PEER_REJOIN_GRACE_MS,
  PathKind,
  PAIR_HANDSHAKE_ATTEMPTS,
  PAIR_HANDSHAKE_COOLDOWN_MS,
  PAIR_HANDSHAKE_RETRY_MS,
  PAIR_IDENTIFIER,
  TRANSPORT_OVERHEAD,
  handshakePrologue,
} from '../../lib/protocol/constants.js';
import type { RandomBytes } from '../../lib/protocol/indices.js';
import { Keypair } from '../../lib/protocol/keypair.js';
import { InitiatorHandshake } from '../../lib/protocol/noise.js';
import { PairSessions, type PairEvent, type PairSessionsOptions, type PeerStatus } from '../../lib/protocol/pair-sessions.js';
import { sealOne } from '../../lib/protocol/send.js';
import { decodeLongControl, encodeCandidates, encodePairRecv, encodePeer, encodePeerGone, isPairData, readRoute, type LongControlMessage, type MacRecord } from '../../lib/protocol/wire.js';
import { ADDR_SLOT } from '../../lib/io/native.js';
import { prng } from '../helpers/session-harness.js';

/** Unix ms: the handshake timestamps derive from it. */
const T0 = 1_700_000_000_000;
/** Locally administered MACs: one behind each port, and some behind none. */
const MAC = {
  a: 0x02_00_00_00_00_0a,
  b: 0x02_00_00_00_00_0b,
  c: 0x02_00_00_00_00_0c,
  ghost: 0x02_00_00_00_00_99,
  foreign: 0x02_00_00_00_00_77,
} as const;

/** A datagram on the fake underlay: PAIR_DATA from member `from`, for the member its route names. */
interface Datagram {
  from: number;
  data: Buffer;
  /** A direct datagram: the address slot it was sent to (absent: to the switch, relayed by the route). */
  to?: Buffer;
  /** The source address the receiver sees (default: the sender's own, or the switch's when relayed). */
  src?: Buffer;
}

/** One port as the fake switch knows it. */
interface Node {
  id: number;
  keys: KeyPair;
  mac: number;
  sessions: PairSessions;
  queue: TxQueue;
  /** Frames the pair sessions accepted (copies). */
  delivered: Buffer[];
  /** Frames the pair sessions handed back for the port's hop-by-hop session (copies). */
  viaSwitch: Buffer[];
  events: PairEvent[];
  /** MAC_CLAIM records the port sent. */
  claims: MacRecord[];
  /** RENDEZVOUS, PATH_REPORT and PEER_QUERY the port sent. */
  longControl: LongControlMessage[];
  /** Its own underlay address (direct datagrams come from here). */
  address: Buffer;
}

/** Deterministic randomness for the session indices and cookie secrets. */
function seeded(seed: number): RandomBytes {
  const rnd = prng(seed);
  return (n) => {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = Math.floor(rnd() * 256);
    return b;
  };
}

/** PEER messages as the switch would send them, decoded as the port would. */
function peerMessages(id: number, publicKey: Buffer, name: string, macs: MacRecord[], self = false) {
  return encodePeer(id, publicKey, name, macs, self).map((m) => {
    const d = decodeLongControl(m, 0, m.length);
    assert.ok(d !== null && d.kind === LongControl.PEER);
    return d;
  });
}

/** Bound on pump() rounds: an exchange that never ends is a bug. */
const PUMP_MAX_ROUNDS = 100;

/**
 * The switch's part in pair sessions, reduced to what they need: each port's
 * PAIR_SEND goes to the named member as PAIR_RECV with the sender's key, and
 * each PAIR_DATA datagram (from the DatagramQueue or host.send) to the member
 * its route names, in receive batches of up to 64.
 */
class FakeSwitch {
  now = T0;
  /** Ports may reach each other directly (the tests of direct paths); otherwise any direct send fails the test. */
  allowDirect = false;
  readonly address = encodeAddress('10.0.0.1', 9999);
  readonly nodes = new Map<number, Node>();
  /** Relayed handshake messages not delivered yet. */
  control: { src: number; dst: number; message: Buffer }[] = [];
  /** PAIR_DATA in flight. */
  wire: Datagram[] = [];
  /** PAIR_SEND for a member that has no node here (a hand-driven peer): the test reads them. */
  unrouted: { src: number; dst: number; message: Buffer }[] = [];

  add(id: number, mac: number, opts: Partial<PairSessionsOptions> = {}): Node {
    const keys = generateKeyPair();
    const socket = new MemorySocket((data, dst) => {
      if (this.allowDirect && !dst.equals(this.address)) {
        this.wire.push({ from: id, data, to: Buffer.from(dst) });
        return;
      }
      assert.deepEqual(dst, this.address, 'sealed frames go to the switch, which relays them');
      this.wire.push({ from: id, data });
    });
    const queue = new TxQueue(socket);
    const node: Node = { id, keys, mac, sessions: undefined as unknown as PairSessions, queue, delivered: [], viaSwitch: [], events: [], claims: [], longControl: [], address: encodeAddress(`192.0.2.${id}`, 5000 + id) };
    node.sessions = new PairSessions(
      {
        toSwitch: (payload) => {
          const msg = decodeLongControl(payload, 0, payload.length);
          assert.ok(msg !== null, 'the port sends only well-formed long control');
          if (msg.kind === LongControl.PAIR_SEND) this.control.push({ src: id, dst: msg.dst, message: msg.message });
          else if (msg.kind === LongControl.MAC_CLAIM) node.claims.push(...msg.macs);
          else if (msg.kind === LongControl.RENDEZVOUS || msg.kind === LongControl.PATH_REPORT || msg.kind === LongControl.PEER_QUERY) node.longControl.push(msg);
          else assert.fail(`a port sent kind ${msg.kind}`);
          return true;
        },
        send: (datagram) => this.wire.push({ from: id, data: Buffer.from(datagram) }),
        sendTo: (datagram, addr) => {
          if (!this.allowDirect) assert.fail(`no direct paths here: a datagram of ${datagram.length} bytes went to a peer`);
          this.wire.push({ from: id, data: Buffer.from(datagram), to: Buffer.from(addr) });
        },
        event: (e) => node.events.push(e),
      },
      queue,
      Buffer.from(this.address),
      { privateKey: keys.privateKey, random: seeded(id), ...opts },
    );
    for (const m of peerMessages(id, keys.publicKey, `p${id}`, [{ mac, vlan: 0 }], true)) node.sessions.peer(m, this.now);
    this.nodes.set(id, node);
    return node;
  }

  /** `viewer` gets `target`'s directory entry (its MACs, by default the one it was made with). */
  introduce(viewer: Node, target: Node, macs: MacRecord[] = [{ mac: target.mac, vlan: 0 }]): void {
    for (const m of peerMessages(target.id, target.keys.publicKey, `p${target.id}`, macs)) viewer.sessions.peer(m, this.now);
  }

  /** Frames from `node`'s device, one transmit() per 64. */
  send(node: Node, frames: readonly Buffer[]): void {
    for (let k = 0; k < frames.length; k += BATCH_SIZE) {
      node.sessions.transmit(buffersToBatch(frames.slice(k, k + BATCH_SIZE)), this.now, (batch) => node.viaSwitch.push(...batchToBuffers(batch)));
    }
  }

  /** Every PAIR_DATA datagram in flight (queues flushed first); the caller decides what arrives. */
  take(): Datagram[] {
    for (const n of this.nodes.values()) n.queue.flush();
    return this.wire.splice(0);
  }

  /** Deliver datagrams in order, consecutive ones for the same member in one batch, each batch in a fresh slab (opened in place). */
  deliver(list: readonly Datagram[]): void {
    // Direct datagrams go to the node at their address (none: lost), relayed ones to the member their route names.
    const dstOf = (d: Datagram): number => (d.to === undefined ? readRoute(d.data, 0) : ([...this.nodes.values()].find((x) => x.address.equals(d.to!))?.id ?? -1));
    let i = 0;
    while (i < list.length) {
      const dst = dstOf(list[i]!);
      let n = 1;
      while (i + n < list.length && n < BATCH_SIZE && dstOf(list[i + n]!) === dst) n++;
      const part = list.slice(i, i + n);
      i += n;
      for (const d of part) assert.ok(isPairData(d.data, 0, d.data.length), 'only PAIR_DATA crosses between ports');
      const node = this.nodes.get(dst);
      if (node === undefined) continue;
      const batch = buffersToBatch(part.map((d) => Buffer.from(d.data)));
      const slots = new Uint16Array(part.length).map((_, k) => k);
      const frames = new MutableFrameBatch(Buffer.alloc(0), BATCH_SIZE);
      const addrs = Buffer.alloc(part.length * ADDR_SLOT);
      for (let k = 0; k < part.length; k++) {
        const d = part[k]!;
        (d.src ?? (d.to === undefined ? this.address : this.nodes.get(d.from)!.address)).copy(addrs, k * ADDR_SLOT);
      }
      node.sessions.receive(batch, addrs, slots, 0, part.length, this.now, frames);
      node.delivered.push(...batchToBuffers(frames));
    }
  }

  /** Relay handshakes and deliver datagrams, and whatever they provoke, until quiet. */
  pump(tamper?: (list: Datagram[]) => Datagram[]): void {
    for (let round = 0; round < PUMP_MAX_ROUNDS; round++) {
      const control = this.control.splice(0);
      const wire = this.take();
      if (control.length === 0 && wire.length === 0) return;
      for (const c of control) {
        const dst = this.nodes.get(c.dst);
        if (dst === undefined) {
          this.unrouted.push(c);
          continue;
        }
        // As the switch does: PAIR_RECV carries the key it vouches for.
        const recv = encodePairRecv(c.src, this.nodes.get(c.src)!.keys.publicKey, c.message);
        const msg = decodeLongControl(recv, 0, recv.length);
        assert.ok(msg !== null && msg.kind === LongControl.PAIR_RECV);
        dst.sessions.relayed(msg.src, msg.publicKey, msg.message, this.now);
      }
      this.deliver(tamper ? tamper(wire) : wire);
    }
    throw new Error(`the wire did not go quiet in ${PUMP_MAX_ROUNDS} rounds`);
  }
}

/** A unicast frame src -> dst, `size` bytes, its payload a pattern of `id`. */
function frame(src: number, dst: number, id: number, size = 100): Buffer {
  const payload = Buffer.alloc(size - 14);
  for (let i = 0; i < payload.length; i++) payload[i] = (id * 31 + i * 7) & 0xff;
  return buildFrame({ dst, src, etherType: 0x88b5, payload });
}

function peerOf(node: Node, id: number): PeerStatus | undefined {
  return node.sessions.status(0).find((p) => p.id === id);
}

/** A and B (ids 1 and 2) that know each other, with a pair session up (A initiated). */
function pairUp(opts: Partial<PairSessionsOptions> = {}): { sw: FakeSwitch; a: Node; b: Node } {
  const sw = new FakeSwitch();
  const a = sw.add(1, MAC.a, opts);
  const b = sw.add(2, MAC.b, opts);
  sw.introduce(a, b);
  sw.introduce(b, a);
  sw.send(a, [frame(MAC.a, MAC.b, 0)]);
  sw.pump();
  assert.equal(peerOf(a, 2)?.state, 'up');
  assert.equal(peerOf(b, 1)?.state, 'up');
  sw.now += 100;
  return { sw, a, b };
}

test('the first frame goes through the switch and starts the relayed handshake; later frames are sealed end to end and arrive byte-identical', () => {
  const sw = new FakeSwitch();
  const a = sw.add(1, MAC.a);
  const b = sw.add(2, MAC.b);
  sw.introduce(a, b);
  sw.introduce(b, a);
  assert.equal(a.sessions.selfId, 1);
  assert.equal(peerOf(a, 2)?.state, 'idle');

  const first = frame(MAC.a, MAC.b, 0);
  sw.send(a, [first]);
  assert.deepEqual(a.viaSwitch, [first], 'no session yet: hop by hop');
  assert.equal(a.sessions.counters.viaSwitchNoSession, 1);
  assert.equal(a.sessions.counters.txViaSwitch, 1);
  assert.equal(a.sessions.counters.txPair, 0);
  assert.equal(a.sessions.counters.handshakesSent, 1);
  assert.equal(sw.control.length, 1);
  assert.equal(sw.control[0]!.dst, 2);
  assert.equal(sw.control[0]!.message[1], MessageType.HANDSHAKE_INITIATION);
  assert.equal(peerOf(a, 2)?.state, 'handshaking');
  sw.send(a, [frame(MAC.a, MAC.b, 1)]);
  assert.equal(a.sessions.counters.handshakesSent, 1, 'one handshake on the way is enough');

  sw.pump();
  for (const [node, peer, initiator] of [
    [a, 2, true],
    [b, 1, false],
  ] as const) {
    const s = peerOf(node, peer)!;
    assert.equal(s.state, 'up');
    assert.equal(s.path, 'relayed');
    assert.equal(node.sessions.counters.handshakes, 1);
    assert.equal(node.sessions.sessionCount, 1);
    assert.deepEqual(
      node.events.map((e) => [e.type, e.type === 'pair-up' && e.initiator]),
      [['pair-up', initiator]],
    );
  }

  sw.now += 10;
  const sent = Array.from({ length: 100 }, (_, i) => frame(MAC.a, MAC.b, 10 + i, 14 + ((i * 137) % 1400)));
  sw.send(a, sent);
  assert.equal(a.viaSwitch.length, 2, 'nothing more hop by hop');
  assert.equal(a.sessions.counters.txPair, 100);
  const wire = sw.take();
  assert.equal(wire.length, 100);
  wire.forEach((d, i) => {
    assert.equal(d.data[1], MessageType.PAIR_DATA);
    assert.equal(readRoute(d.data, 0), 2, 'routed to member 2');
    assert.equal(d.data.length, sent[i]!.length + TRANSPORT_OVERHEAD);
    if (sent[i]!.length >= 40) assert.equal(d.data.includes(sent[i]!.subarray(14)), false, 'the switch cannot read it');
  });
  sw.deliver(wire);
  assert.deepEqual(b.delivered, sent);
  assert.equal(b.sessions.counters.rxPair, 100);
  const bytes = sent.reduce((n, f) => n + f.length, 0);
  assert.equal(peerOf(a, 2)!.txFrames, 100);
  assert.equal(peerOf(a, 2)!.txBytes, bytes);
  assert.equal(peerOf(b, 1)!.rxFrames, 100);
  assert.equal(peerOf(b, 1)!.rxBytes, bytes);

  // And back: the responder seals once the initiator's keepalive confirmed its keys.
  const back = [frame(MAC.b, MAC.a, 500), frame(MAC.b, MAC.a, 501, 1400)];
  sw.send(b, back);
  assert.deepEqual(b.viaSwitch, []);
  sw.pump();
  assert.deepEqual(a.delivered, back);
  assert.equal(a.sessions.counters.rxPair, 2);
  assert.equal(b.sessions.counters.txPair, 2);
  for (const n of [a, b]) {
    assert.equal(n.sessions.counters.authFailed, 0);
    assert.equal(n.sessions.counters.replayed, 0);
  }

  // The sources used end to end are claimed at the switch, so its entries do not age.
  a.sessions.poll(sw.now);
  assert.deepEqual(a.claims, [{ mac: MAC.a, vlan: 0 }]);
  a.sessions.poll(sw.now + 1000);
  assert.deepEqual(a.claims, [{ mac: MAC.a, vlan: 0 }], 'not used since: not claimed again');
});

test('broadcast, multicast and runt frames always go through the switch', () => {
  const { sw, a } = pairUp();
  const group = [
    buildFrame({ dst: BROADCAST_MAC, src: MAC.a, etherType: 0x0806 }),
    buildFrame({ dst: 0x01_00_5e_00_00_01, src: MAC.a, etherType: 0x0800 }),
    buildFrame({ dst: 0x33_33_00_00_00_01, src: MAC.a, etherType: 0x86dd }),
    frame(MAC.a, MAC.b, 1).subarray(0, 10),
  ];
  const before = { ...a.sessions.counters };
  sw.send(a, group);
  assert.deepEqual(a.viaSwitch.slice(-4), group);
  assert.equal(a.sessions.counters.viaSwitchGroup - before.viaSwitchGroup, 4);
  assert.equal(a.sessions.counters.txPair, before.txPair);
  assert.deepEqual(sw.take(), []);
});

test('a frame from a source MAC that is not ours goes through the switch; sealed anyway, the receiver drops it', () => {
  const { sw, a, b } = pairUp();
  const own1 = frame(MAC.a, MAC.b, 1);
  const forged = frame(MAC.foreign, MAC.b, 2);
  const own2 = frame(MAC.a, MAC.b, 3);
  const hop = a.viaSwitch.length;
  sw.send(a, [own1, forged, own2]);
  assert.deepEqual(a.viaSwitch.slice(hop), [forged], 'the switch must see the new source to learn it');
  assert.equal(a.sessions.counters.viaSwitchForeignSrc, 1);
  assert.equal(a.sessions.counters.txPair, 2);
  sw.pump();
  assert.deepEqual(b.delivered, [own1, own2]);

  // A member that seals frames from any source (the test seam): the receiver checks against the directory.
  a.sessions.checkOwnSource = false;
  sw.send(a, [forged, own1, forged]);
  assert.equal(a.viaSwitch.length, hop + 1, 'nothing more hop by hop');
  assert.equal(a.sessions.counters.txPair, 5);
  sw.pump();
  assert.equal(b.sessions.counters.srcNotOwned, 2);
  assert.equal(peerOf(b, 1)!.srcNotOwned, 2);
  assert.deepEqual(b.delivered, [own1, own2, own1], 'the forged frames are not delivered');
  assert.equal(b.sessions.counters.authFailed, 0, 'they were authentic, only not from its MAC');
});

test('a frame for a MAC the peer does not own is dropped there with NOT_HERE; the sender then goes through the switch', () => {
  const sw = new FakeSwitch();
  const a = sw.add(1, MAC.a);
  const b = sw.add(2, MAC.b);
  // A's directory places the ghost behind B; B's own MACs (SELF) do not include it.
  sw.introduce(a, b, [
    { mac: MAC.b, vlan: 0 },
    { mac: MAC.ghost, vlan: 0 },
  ]);
  sw.introduce(b, a);
  sw.send(a, [frame(MAC.a, MAC.b, 0)]);
  sw.pump();
  assert.equal(peerOf(a, 2)!.macs, 2);

  const ghost = [frame(MAC.a, MAC.ghost, 1), frame(MAC.a, MAC.ghost, 2)];
  sw.send(a, ghost);
  assert.equal(a.sessions.counters.txPair, 2, 'sealed: the directory says the ghost is behind B');
  const wire = sw.take();
  sw.deliver(wire);
  assert.deepEqual(b.delivered, []);
  assert.equal(b.sessions.counters.dstNotHere, 2);
  assert.equal(b.sessions.counters.notHereSent, 1, 'one notice for the run of frames');
  sw.pump();
  assert.equal(a.sessions.counters.notHereReceived, 1);
  assert.equal(peerOf(a, 2)!.macs, 1, 'the entry is gone');
  assert.deepEqual(a.delivered, [], 'a notice is no frame');

  const hop = a.viaSwitch.length;
  const again = frame(MAC.a, MAC.ghost, 3);
  const toB = frame(MAC.a, MAC.b, 4);
  sw.send(a, [again, toB]);
  assert.deepEqual(a.viaSwitch.slice(hop), [again]);
  assert.equal(a.sessions.counters.viaSwitchUnknownDst, 1);
  assert.equal(a.sessions.counters.txPair, 3, 'B itself is still reached end to end');
  sw.pump();
  assert.deepEqual(b.delivered, [toB]);
});

test('a bit flipped in transit fails authentication and delivers nothing; a replay is counted and delivered once', () => {
  const { sw, a, b } = pairUp();
  const f = frame(MAC.a, MAC.b, 1);
  sw.send(a, [f]);
  const [d] = sw.take();
  assert.ok(d !== undefined);
  for (const at of [20, d.data.length - 1, 9]) {
    // 20: ciphertext, last: tag, 9: the counter (associated data; a higher counter must not move the window).
    const bad = Buffer.from(d.data);
    bad[at] = bad[at]! ^ 0x04;
    sw.deliver([{ from: 1, data: bad }]);
  }
  assert.equal(b.sessions.counters.authFailed, 3);
  assert.equal(peerOf(b, 1)!.authFailed, 3);
  assert.deepEqual(b.delivered, []);

  sw.deliver([d]);
  assert.deepEqual(b.delivered, [f], 'the genuine datagram still passes');
  sw.deliver([d]);
  assert.equal(b.sessions.counters.replayed, 1);
  assert.deepEqual(b.delivered, [f], 'delivered once');

  // Twice in one receive batch: the second copy fails the window after opening.
  const g = frame(MAC.a, MAC.b, 2);
  sw.send(a, [g]);
  const [e] = sw.take();
  sw.deliver([e!, { from: 1, data: Buffer.from(e!.data) }]);
  assert.deepEqual(b.delivered, [f, g]);
  assert.equal(b.sessions.counters.replayed, 2);
  assert.equal(b.sessions.counters.rxPair, 2);
});

/** An initiation for `responder`'s key, made with `keys`, as a port would relay it. */
function initiationFrom(keys: KeyPair, responder: Node, now: number, senderIndex = 0x0c0c_0c0c): { message: Buffer; handshake: InitiatorHandshake } {
  return InitiatorHandshake.createInitiation({
    staticPrivateKey: keys.privateKey,
    responderPublicKey: responder.keys.publicKey,
    senderIndex,
    now,
    prologue: handshakePrologue(DEFAULT_CIPHER, PAIR_IDENTIFIER),
  });
}

test('a relayed initiation from another key than the switch vouched for is rejected, and opens no session', () => {
  const sw = new FakeSwitch();
  const a = sw.add(1, MAC.a);
  const b = sw.add(2, MAC.b);
  sw.introduce(b, a);
  const mallory = generateKeyPair();
  // Relayed as from member 1 with A's key, but the Noise static key inside is Mallory's.
  b.sessions.relayed(1, a.keys.publicKey, initiationFrom(mallory, b, sw.now).message, sw.now);
  assert.equal(b.sessions.counters.handshakeRejected, 1);
  assert.equal(sw.control.length, 0, 'no response');
  assert.equal(b.sessions.sessionCount, 0);
  assert.equal(peerOf(b, 1)!.state, 'idle');
  assert.deepEqual(b.events, []);

  // The same kind of initiation under the key it really has is accepted (a new member, 3).
  b.sessions.relayed(3, mallory.publicKey, initiationFrom(mallory, b, sw.now + 100).message, sw.now + 100);
  assert.equal(b.sessions.counters.handshakeRejected, 1);
  assert.equal(sw.control.length, 1);
  assert.equal(sw.control[0]!.dst, 3);
  assert.equal(sw.control[0]!.message[1], MessageType.HANDSHAKE_RESPONSE);

  // Nor does a port take a handshake relayed as from itself, or a message that is no handshake.
  b.sessions.relayed(2, b.keys.publicKey, initiationFrom(mallory, b, sw.now + 200).message, sw.now + 200);
  b.sessions.relayed(1, a.keys.publicKey, Buffer.from([2, MessageType.HANDSHAKE_RESPONSE, 0, 0, 1]), sw.now + 200);
  assert.equal(b.sessions.counters.handshakeRejected, 3);
  assert.equal(sw.control.length, 1);
});

test('PEER GONE closes the session with that member and forgets its MACs: the next frame goes through the switch', () => {
  const { sw, a, b } = pairUp();
  a.sessions.peer(peerMessages(9, generateKeyPair().publicKey, 'x', [])[0]!, sw.now);
  const gone = decodeLongControl(encodePeerGone(2), 0, 4);
  assert.ok(gone !== null && gone.kind === LongControl.PEER);
  a.sessions.peer(gone, sw.now);
  assert.equal(a.sessions.counters.peersGone, 1);
  assert.deepEqual(
    a.sessions.status(sw.now).map((p) => p.id),
    [9],
    'B is no longer listed',
  );
  assert.equal(a.sessions.sessionCount, 0);
  assert.deepEqual(a.events.at(-1), { type: 'pair-down', peer: 'p2', reason: 'the switch says it left or was revoked' });

  const f = frame(MAC.a, MAC.b, 1);
  sw.send(a, [f]);
  assert.deepEqual(a.viaSwitch.at(-1), f);
  assert.equal(a.sessions.counters.viaSwitchUnknownDst, 1);
  assert.deepEqual(sw.take(), []);

  // What B still seals on the old session finds no keys at A.
  sw.send(b, [frame(MAC.b, MAC.a, 2)]);
  sw.pump();
  assert.equal(a.sessions.counters.unknownIndex, 1);
  assert.deepEqual(a.delivered, []);

  a.sessions.peer(gone, sw.now);
  assert.equal(a.sessions.counters.peersGone, 1, 'GONE for a member we do not know: nothing to do');
});

test('a peer LEAVE closes the session at the other end', () => {
  const { sw, a, b } = pairUp();
  a.sessions.close();
  sw.pump();
  assert.equal(peerOf(b, 1)!.state, 'idle');
  assert.equal(b.sessions.sessionCount, 0);
  assert.deepEqual(b.events.at(-1), { type: 'pair-down', peer: 'p1', reason: 'the peer closed the session' });
  const f = frame(MAC.b, MAC.a, 1);
  sw.send(b, [f]);
  assert.deepEqual(b.viaSwitch, [f], 'no session: hop by hop, and a new handshake');
  assert.equal(b.sessions.counters.handshakesSent, 1);
});

test('maxSessions: opening a session to a third peer evicts the least recently used one', () => {
  const sw = new FakeSwitch();
  const a = sw.add(1, MAC.a, { maxSessions: 1 });
  const b = sw.add(2, MAC.b);
  const c = sw.add(3, MAC.c);
  for (const [x, y] of [
    [a, b],
    [b, a],
    [a, c],
    [c, a],
  ] as const) {
    sw.introduce(x, y);
  }
  sw.send(a, [frame(MAC.a, MAC.b, 0)]);
  sw.pump();
  assert.equal(peerOf(a, 2)!.state, 'up');

  sw.now += 1000;
  sw.send(a, [frame(MAC.a, MAC.c, 1)]);
  sw.pump();
  assert.equal(a.sessions.counters.evicted, 1);
  assert.equal(peerOf(a, 3)!.state, 'up');
  assert.equal(peerOf(a, 2)!.state, 'idle', 'B stays in the directory, without a session');
  assert.equal(a.sessions.sessionCount, 1);
  assert.deepEqual(
    a.events.filter((e) => e.type === 'pair-down'),
    [{ type: 'pair-down', peer: 'p2', reason: 'evicted: too many pair sessions' }],
  );

  const toC = frame(MAC.a, MAC.c, 2);
  sw.send(a, [toC]);
  sw.pump();
  assert.deepEqual(c.delivered, [toC]);

  const hop = a.viaSwitch.length;
  const toB = frame(MAC.a, MAC.b, 3);
  sw.send(a, [toB]);
  assert.deepEqual(a.viaSwitch.slice(hop), [toB], 'B again needs a handshake');
  assert.equal(a.sessions.counters.viaSwitchNoSession, 3);
});

test('an unanswered pair initiation is retried, then given up until the cooldown has passed', () => {
  const sw = new FakeSwitch();
  const a = sw.add(1, MAC.a);
  const b = sw.add(2, MAC.b);
  sw.introduce(a, b);
  sw.introduce(b, a);
  sw.send(a, [frame(MAC.a, MAC.b, 0)]);
  for (let k = 1; k < PAIR_HANDSHAKE_ATTEMPTS; k++) {
    sw.control.length = 0; // lost on the way
    sw.now += PAIR_HANDSHAKE_RETRY_MS;
    a.sessions.poll(sw.now);
    assert.equal(sw.control.length, 1, `retry ${k}`);
  }
  assert.equal(a.sessions.counters.handshakesSent, PAIR_HANDSHAKE_ATTEMPTS);
  sw.control.length = 0;
  sw.now += PAIR_HANDSHAKE_RETRY_MS;
  a.sessions.poll(sw.now);
  assert.equal(a.sessions.counters.handshakeFailures, 1);
  assert.equal(peerOf(a, 2)!.state, 'idle');
  assert.equal(sw.control.length, 0);

  sw.send(a, [frame(MAC.a, MAC.b, 1)]);
  assert.equal(a.sessions.counters.handshakesSent, PAIR_HANDSHAKE_ATTEMPTS, 'no new series during the cooldown');
  sw.now += PAIR_HANDSHAKE_COOLDOWN_MS;
  sw.send(a, [frame(MAC.a, MAC.b, 2)]);
  assert.equal(a.sessions.counters.handshakesSent, PAIR_HANDSHAKE_ATTEMPTS + 1);
  sw.pump();
  assert.equal(peerOf(a, 2)!.state, 'up');
  assert.equal(a.viaSwitch.length, 3, 'every frame meanwhile went hop by hop');
});

test('a peer rekeying its session does not count as a second session at the responder (nobody is evicted for it)', () => {
  const sw = new FakeSwitch();
  const a = sw.add(1, MAC.a, { rekeyAfterMs: 1000 });
  const b = sw.add(2, MAC.b, { maxSessions: 2 });
  const c = sw.add(3, MAC.c);
  for (const [x, y] of [
    [a, b],
    [b, a],
    [c, b],
    [b, c],
  ] as const) {
    sw.introduce(x, y);
  }
  sw.send(a, [frame(MAC.a, MAC.b, 0)]);
  sw.send(c, [frame(MAC.c, MAC.b, 0)]);
  sw.pump();
  assert.equal(b.sessions.sessionCount, 2);

  sw.now += 1500;
  sw.send(a, [frame(MAC.a, MAC.b, 1)]); // sealed, and old enough to rekey
  sw.pump();
  assert.equal(a.sessions.counters.handshakes, 2, 'A rekeyed');
  assert.equal(b.sessions.sessionCount, 2, 'still two peers with sessions');
  assert.equal(b.sessions.counters.evicted, 0, 'nobody evicted');
  assert.equal(peerOf(b, 3)!.state, 'up');
});

test('repeated group-addressed frames on a pair session all count as dstGroup', () => {
  const sw = new FakeSwitch();
  const b = sw.add(2, MAC.b);
  // A hand-driven member 3: its own handshake and keys, so it can seal what A's transmit() never would.
  const c = generateKeyPair();
  for (const m of peerMessages(3, c.publicKey, 'c', [{ mac: MAC.c, vlan: 0 }])) b.sessions.peer(m, sw.now);
  const { message, handshake } = initiationFrom(c, b, sw.now);
  b.sessions.relayed(3, c.publicKey, message, sw.now);
  sw.pump();
  const [reply] = sw.unrouted;
  assert.ok(reply !== undefined);
  const res = handshake.consumeResponse(reply.message);
  assert.ok(res.ok);
  const kp = new Keypair(res.keys, sw.now);
  kp.wireType = MessageType.PAIR_DATA;
  kp.route = 2;
  const group = buildFrame({ dst: BROADCAST_MAC, src: MAC.c, etherType: 0x0806, payload: Buffer.alloc(28) });
  sw.deliver([0, 1, 2].map(() => ({ from: 3, data: sealOne(kp, group) })));
  assert.deepEqual(b.delivered, []);
  assert.equal(b.sessions.counters.dstGroup, 3);
  assert.equal(b.sessions.counters.dstNotHere, 0);
});

// ---------------------------------------------------------------- direct paths

/** CANDIDATES as the switch sends them: `target`'s own address as the only candidate, decoded as the port would. */
function candidatesOf(target: Node, flags = 0) {
  const m = encodeCandidates(target.id, flags, NatMapping.ENDPOINT_INDEPENDENT, target.address, []);
  const d = decodeLongControl(m, 0, m.length);
  assert.ok(d !== null && d.kind === LongControl.CANDIDATES);
  return d;
}

/** A pair session, then the switch introduces A and B (both probe), and the wire settles. */
function directUp(opts: Partial<PairSessionsOptions> = {}, optsB: Partial<PairSessionsOptions> = opts) {
  const sw = new FakeSwitch();
  sw.allowDirect = true;
  const a = sw.add(1, MAC.a, opts);
  const b = sw.add(2, MAC.b, optsB);
  sw.introduce(a, b);
  sw.introduce(b, a);
  sw.send(a, [frame(MAC.a, MAC.b, 0)]);
  sw.pump();
  sw.now += 10;
  sw.send(a, [frame(MAC.a, MAC.b, 1)]);
  sw.pump();
  assert.ok(a.longControl.some((m) => m.kind === LongControl.RENDEZVOUS && m.id === 2), 'traffic asked the switch for an introduction');
  a.sessions.candidates(candidatesOf(b), sw.now);
  b.sessions.candidates(candidatesOf(a), sw.now);
  sw.pump();
  return { sw, a, b };
}

test('direct: after an introduction both ports probe, the answers make the path direct, and frames go to the peer, not the switch', () => {
  const { sw, a, b } = directUp();
  const pa = peerOf(a, 2)!;
  assert.equal(pa.path, 'direct', JSON.stringify(pa));
  assert.equal(pa.endpoint, formatAddress(b.address));
  assert.equal(peerOf(b, 1)!.path, 'direct');
  assert.ok(a.events.some((e) => e.type === 'path' && e.path === 'direct'), 'the change is an event (logged)');
  assert.ok(a.longControl.some((m) => m.kind === LongControl.PATH_REPORT && m.id === 2 && m.path === PathKind.DIRECT), 'and reported to the switch');
  const before = b.delivered.length;
  sw.send(a, [frame(MAC.a, MAC.b, 2), frame(MAC.a, MAC.b, 3)]);
  const wire = sw.take();
  assert.equal(wire.length, 2);
  for (const d of wire) assert.ok(d.to?.equals(b.address), 'sealed to the peer itself');
  sw.deliver(wire);
  assert.equal(b.delivered.length - before, 2);
  assert.equal(b.sessions.counters.rxDirect, b.delivered.length - before + (b.sessions.counters.rxDirect - 2));
  assert.ok(peerOf(b, 1)!.rxDirectBytes >= 2 * 100);
});

test('direct: a forged datagram from another address, and an authentic one replayed from there, create no candidate and move no path', () => {
  const { sw, a, b } = directUp();
  const attacker = encodeAddress('203.0.113.66', 6666);
  // A forgery: B's session header with garbage ciphertext, from the attacker's address.
  sw.send(a, [frame(MAC.a, MAC.b, 10)]);
  const [real] = sw.take();
  const forged = Buffer.from(real!.data);
  forged.fill(0x5a, 16);
  const failed = b.sessions.counters.authFailed;
  sw.deliver([{ from: 1, data: forged, to: b.address, src: attacker }]);
  assert.equal(b.sessions.counters.authFailed, failed + 1);
  // The authentic datagram arrives, then a copy of it from the attacker: the replay window drops the copy.
  sw.deliver([real!]);
  const replayed = b.sessions.counters.replayed;
  sw.deliver([{ ...real!, src: attacker }]);
  assert.equal(b.sessions.counters.replayed, replayed + 1);
  const pb = peerOf(b, 1)!;
  assert.equal(pb.endpoint, formatAddress(a.address), 'the path is where it was');
  assert.ok(!pb.candidates.some((c) => c.address === formatAddress(attacker)), `no candidate at the attacker: ${JSON.stringify(pb.candidates)}`);
});

test('direct: a redirected fresh datagram makes its source a candidate that is probed, but the path moves only if that address answers on the session', () => {
  const { sw, a, b } = directUp();
  const elsewhere = encodeAddress('203.0.113.77', 7777);
  sw.send(a, [frame(MAC.a, MAC.b, 20)]);
  const [d] = sw.take();
  sw.deliver([{ ...d!, src: elsewhere }]);
  const pb = peerOf(b, 1)!;
  assert.ok(pb.candidates.some((c) => c.address === formatAddress(elsewhere) && c.kind === 'observed' && !c.working), JSON.stringify(pb.candidates));
  assert.equal(pb.endpoint, formatAddress(a.address));
  // B probed it: that probe goes to the redirect address, where nobody answers.
  const probes = sw.take().filter((x) => x.to?.equals(elsewhere));
  assert.equal(probes.length, 1);
  assert.equal(peerOf(b, 1)!.endpoint, formatAddress(a.address));
});

test('direct: --no-direct on one side: it neither probes nor answers; the pair stays relayed and both say why', () => {
  const { sw, a, b } = directUp({}, { direct: false });
  const pa = peerOf(a, 2)!;
  const pb = peerOf(b, 1)!;
  assert.equal(pa.path, 'relayed');
  assert.equal(pb.path, 'relayed');
  assert.equal(pb.reason, 'direct disabled (--no-direct)');
  assert.match(pa.reason ?? '', /probes unanswered/);
  assert.equal(b.sessions.counters.probesSent, 0);
  assert.equal(b.sessions.counters.probesAnswered, 0);
  assert.ok(a.sessions.counters.probesSent > 0);
  sw.send(a, [frame(MAC.a, MAC.b, 30)]);
  for (const d of sw.take()) assert.equal(d.to, undefined, 'relayed');
});

test('direct: a rejoin of the switch keeps the pair session and its direct path; the new switch names the peer again', () => {
  const { sw, a, b } = directUp();
  a.sessions.rejoined(sw.now);
  const pa = peerOf(a, 2)!;
  assert.equal(pa.stale, true);
  assert.equal(pa.path, 'direct');
  const before = b.delivered.length;
  sw.send(a, [frame(MAC.a, MAC.b, 40)]);
  sw.pump();
  assert.equal(b.delivered.length, before + 1, 'frames still flow on the direct path');
  a.sessions.poll(sw.now);
  assert.ok(a.longControl.some((m) => m.kind === LongControl.PEER_QUERY && m.publicKey.equals(b.keys.publicKey)), 'the port asks the new switch who has the key');
  // The new switch gives B another id: the pair carries on under it.
  for (const m of peerMessages(7, b.keys.publicKey, 'p2', [{ mac: MAC.b, vlan: 0 }])) a.sessions.peer(m, sw.now);
  const again = a.sessions.status(sw.now).find((p) => p.name === 'p2')!;
  assert.equal(again.id, 7);
  assert.equal(again.stale, undefined);
  assert.equal(again.state, 'up');
  assert.equal(a.sessions.counters.peersKeptAcrossRejoin, 1);
});

test('direct: a peer the new switch never vouches for again is dropped after the grace time', () => {
  const { sw, a } = directUp();
  a.sessions.rejoined(sw.now);
  a.sessions.poll(sw.now + PEER_REJOIN_GRACE_MS + 1);
  assert.equal(a.sessions.status(sw.now).length, 0);
  assert.equal(a.sessions.counters.peersLostAtRejoin, 1);
});
