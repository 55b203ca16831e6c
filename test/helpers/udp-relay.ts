// A misbehaving path for tests: a userspace UDP relay between one vport and the
// switch that reorders (shuffled groups), duplicates and replays EtherLink v2
// transport datagrams. Run inside a test namespace; it exits after maxMs.
//
//   node udp-relay.js <listenHost> <listenPort> <targetHost> <targetPort> ['{"group":8,...}']
//
// Prints "relay ready" once bound. SIGUSR1: stop injecting (forward only, still
// reordering) and print "relay stats {json}" with what was injected per direction.
// SIGUSR2: start the `attack` on end-to-end datagrams (PAIR_DATA) going up —
// 'flip' one ciphertext bit, or 'redirect' them to member `redirectTo` — and
// print "attack on".
import { createSocket, type RemoteInfo } from 'node:dgram';

interface RelayOptions {
  /** Datagrams held and released together in shuffled order. */
  group: number;
  /** A partial group is released after this long. */
  flushMs: number;
  /** Probability that a transport datagram is sent twice (the copy lands in a later shuffled group). */
  dupUp: number;
  dupDown: number;
  /** After every N released datagrams, resend one released earlier (0 = never). */
  replayEveryUp: number;
  replayEveryDown: number;
  /** Exit after this long whatever happens. */
  maxMs: number;
  /**
   * What SIGUSR2 starts doing to PAIR_DATA from the port: 'flip' a ciphertext
   * bit, 'redirect' to another member — or, 'rebind', move to a new upstream
   * source port once, as a NAT whose mapping changed.
   */
  attack: 'none' | 'flip' | 'redirect' | 'rebind';
  /** The member id 'redirect' writes into the route bytes. */
  redirectTo: number;
}

const [listenHost, listenPort, targetHost, targetPort, json] = process.argv.slice(2);
const o: RelayOptions = {
  group: 8,
  flushMs: 2,
  dupUp: 0.05,
  dupDown: 0.05,
  replayEveryUp: 40,
  replayEveryDown: 40,
  maxMs: 120_000,
  attack: 'none',
  redirectTo: 0,
  ...(json ? (JSON.parse(json) as Partial<RelayOptions>) : {}),
};
/** Earlier datagrams kept per direction for replay. */
const RING = 512;

let injecting = true;

/** Transport data of either kind: port-switch (0x24 frames, 0x28 control) or end to end (0x27). */
const isTransport = (b: Buffer): boolean => b.length >= 32 && b[0] === 2 && (b[1] === 0x24 || b[1] === 0x27 || b[1] === 0x28);
const isPairData = (b: Buffer): boolean => b.length >= 32 && b[0] === 2 && b[1] === 0x27;
let attacking = false;
const attacked = { flipped: 0, redirected: 0 };

/** The attack on one datagram from the port, when on. */
function attack(b: Buffer): Buffer {
  if (!attacking || !isPairData(b)) return b;
  if (o.attack === 'flip') {
    const at = 16 + ((b.length - 32) >> 1); // a ciphertext bit (or the tag's, for an empty keepalive)
    b[at] = b[at]! ^ 0x10;
    attacked.flipped++;
  } else if (o.attack === 'redirect') {
    b.writeUInt16BE(o.redirectTo, 2);
    attacked.redirected++;
  }
  return b;
}

class Lane {
  readonly stats = { forwarded: 0, duplicated: 0, replayed: 0 };
  private held: Buffer[] = [];
  private timer: NodeJS.Timeout | null = null;
  private readonly ring: Buffer[] = [];
  constructor(
    private readonly send: (b: Buffer) => void,
    private readonly dup: number,
    private readonly replayEvery: number,
  ) {}

  push(b: Buffer): void {
    this.held.push(b);
    if (injecting && isTransport(b) && Math.random() < this.dup) {
      this.stats.duplicated++;
      // The copy waits for the next group: duplicated *and* out of order.
      setTimeout(() => this.push(Buffer.from(b)), o.flushMs);
    }
    if (this.held.length >= o.group) this.release();
    else this.timer ??= setTimeout(() => this.release(), o.flushMs);
  }

  private release(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const list = this.held;
    this.held = [];
    for (let i = list.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [list[i], list[j]] = [list[j]!, list[i]!];
    }
    for (const b of list) {
      this.send(b);
      this.stats.forwarded++;
      if (isTransport(b)) {
        if (this.ring.length < RING) this.ring.push(b);
        else this.ring[Math.floor(Math.random() * RING)] = b;
      }
      if (injecting && this.replayEvery > 0 && this.stats.forwarded % this.replayEvery === 0 && this.ring.length > 1) {
        this.send(this.ring[Math.floor(Math.random() * this.ring.length)]!);
        this.stats.replayed++;
      }
    }
  }
}

const client = createSocket('udp4');
let upstream = createSocket('udp4');
let peer: RemoteInfo | null = null;
const up = new Lane((b) => upstream.send(b, Number(targetPort), targetHost), o.dupUp, o.replayEveryUp);
const down = new Lane((b) => peer !== null && client.send(b, peer.port, peer.address), o.dupDown, o.replayEveryDown);

client.on('message', (b, rinfo) => {
  peer = rinfo;
  up.push(attack(b));
});
upstream.on('message', (b) => down.push(b));

/** A new upstream socket (a new source port), the old one closed: what a NAT rebinding looks like to the switch. */
function rebind(): void {
  const old = upstream;
  upstream = createSocket('udp4');
  upstream.on('message', (b) => down.push(b));
  upstream.bind(0, () => process.stdout.write(`rebound to port ${upstream.address().port}\n`));
  old.close();
}
let bound = 0;
const ready = (): void => {
  if (++bound === 2) process.stdout.write('relay ready\n');
};
client.bind(Number(listenPort), listenHost, ready);
upstream.bind(0, ready);

process.on('SIGUSR1', () => {
  injecting = false;
  process.stdout.write(`relay stats ${JSON.stringify({ up: up.stats, down: down.stats, attacked })}\n`);
});
process.on('SIGUSR2', () => {
  attacking = true;
  if (o.attack === 'rebind') rebind();
  process.stdout.write('attack on\n');
});
process.on('SIGTERM', () => process.exit(0));
setTimeout(() => process.exit(0), o.maxMs);
