// The learning switch: per-frame forwarding decisions over zero-copy views of
// each ingress batch, per-port egress batches, counters and status.
import { EventEmitter } from 'node:events';
import { MutableFrameBatch, BATCH_SIZE, type FrameBatch } from '../core/frames.js';
import type { Port } from '../core/port.js';
import { ETHERNET, formatMac, isMulticast, readMac, readVlanId, toMac } from '../core/ethernet.js';
import { MacTable, DEFAULT_AGEING_MS, type MacTableOptions, type LimitReason, type MacTableCounters } from './mac-table.js';
import { EtherlinkError } from '../core/errors.js';

/** 64 KiB payload plus Ethernet header, two VLAN tags (802.1ad + 802.1Q). */
export const DEFAULT_MAX_FRAME_SIZE = 65535 + 18;
/** How often the aging timer sweeps. Lookups already ignore expired entries, so this only reclaims memory and limit slots. */
export const DEFAULT_SWEEP_INTERVAL_MS = 5_000;
/** At most one 'mac-limit' event per port per interval; a MAC flood would otherwise flood the listeners too. */
export const MAC_LIMIT_EVENT_INTERVAL_MS = 10_000;
const EMPTY = Buffer.alloc(0);

/** Frames the switch dropped, by reason. */
export interface DropCounters {
  /** Shorter than the 14-byte Ethernet header. */
  runt: number;
  /** Longer than maxFrameSize. */
  oversize: number;
  /** Multicast/broadcast source address. */
  badSource: number;
  /** Destination was learned on the ingress port itself. */
  samePort: number;
  /** A port's send() re-entered the switch synchronously; the nested batch is dropped. */
  reentrant: number;
}

/** Frames and bytes in and out, per port and in total. */
export interface TrafficCounters {
  rxFrames: number;
  rxBytes: number;
  txFrames: number;
  txBytes: number;
  /** Frames (per egress copy) sent because the destination was unknown or group. */
  flooded: number;
  /** Calls to Port.send that threw. */
  txErrors: number;
  drops: DropCounters;
}

const newCounters = (): TrafficCounters => ({
  rxFrames: 0, rxBytes: 0, txFrames: 0, txBytes: 0, flooded: 0, txErrors: 0,
  drops: { runt: 0, oversize: 0, badSource: 0, samePort: 0, reentrant: 0 },
});

function addRx(c: TrafficCounters, frames: number, bytes: number, runt: number, oversize: number, badSource: number, samePort: number): void {
  c.rxFrames += frames;
  c.rxBytes += bytes;
  c.drops.runt += runt;
  c.drops.oversize += oversize;
  c.drops.badSource += badSource;
  c.drops.samePort += samePort;
}

/** The switch's handle for an attached Port. */
export class SwitchPort {
  readonly counters: TrafficCounters = newCounters();
  /** @internal egress batch reused for every ingress batch; views into the ingress slab. */
  egress = new MutableFrameBatch(EMPTY, BATCH_SIZE);
  /** @internal */
  pendingBytes = 0;
  /** @internal */
  pendingFlooded = 0;
  /** @internal */
  attached = true;
  /** False while the port's link is down: it gets no flooded frames and holds no learned MACs. */
  linkUp = true;
  /** @internal */
  lastLimitEvent = -Infinity;
  /** @internal */
  suppressedLimitEvents = 0;
  constructor(readonly id: number, readonly name: string, readonly port: Port) {}
}

/** The 'mac-move' event: a learned MAC moved to another port. */
export interface MacMoveEvent {
  mac: string;
  vlan: number;
  from: SwitchPort;
  to: SwitchPort;
}

/** The 'link' event of a Switch: a port's link went down or came up. */
export interface LinkEvent {
  port: SwitchPort;
  up: boolean;
}

/** The 'mac-limit' event: a source MAC not learned because a limit was reached. */
export interface MacLimitEvent {
  reason: LimitReason;
  mac: string;
  vlan: number;
  port: SwitchPort;
  /** Limit hits on this port not reported since the previous event. */
  suppressed: number;
}

/** Options of a Switch: clock, MAC table limits and ageing, the move hold. */
export interface SwitchOptions {
  /** Milliseconds; injected for tests. Default Date.now. */
  clock?: () => number;
  ageingMs?: number;
  maxEntries?: number;
  maxPerPort?: number;
  maxFrameSize?: number;
  sweepIntervalMs?: number;
  /** No takeover of an active MAC for this long after its owner's last frame (see MacTableOptions.moveHoldMs). Default 0. */
  moveHoldMs?: number;
}

/** One MAC table entry as status shows it. */
export interface MacStatus {
  mac: string;
  vlan: number;
  port: number;
  portName: string;
  static: boolean;
  ageSeconds: number;
}

/** The state of a Switch as plain JSON: ports, MAC table, counters. */
export interface SwitchSnapshot {
  ports: { id: number; name: string; linkUp: boolean; counters: TrafficCounters; macs: MacStatus[] }[];
  macTable: MacStatus[];
  macTableCounters: MacTableCounters;
  totals: TrafficCounters;
}

/** The learning switch: a MAC table and a forwarding decision per frame, over zero-copy views of each ingress batch, one send per egress port per batch. */
export class Switch extends EventEmitter {
  readonly macTable: MacTable<SwitchPort>;
  readonly totals: TrafficCounters = newCounters();
  readonly maxFrameSize: number;
  /**
   * Sees every ingress batch before it is forwarded (packet capture). The views
   * are valid only during the call; it must not throw or send. Null: no cost.
   */
  onIngress: ((port: SwitchPort, batch: FrameBatch) => void) | null = null;
  /** A known-unicast frame went from `from` to `to` (called on the first such frame per egress port per batch). */
  onUnicast: ((from: SwitchPort, to: SwitchPort) => void) | null = null;
  /** The MACs behind `port` changed (learned, moved away, aged, flushed). */
  onMacsChanged: ((port: SwitchPort) => void) | null = null;
  private readonly clock: () => number;
  private readonly sweepIntervalMs: number;
  // Replaced, never mutated, so a batch in flight keeps a stable list even if
  // a listener adds or removes ports during send().
  private ports: readonly SwitchPort[] = [];
  private nextId = 1;
  private forwarding = false;
  /** Egress ports with frames in the batch being forwarded. */
  private readonly dirty: SwitchPort[] = [];
  private timer: NodeJS.Timeout | null = null;
  /** Fires when the earliest refused MAC claim may be granted. */
  private claimTimer: NodeJS.Timeout | null = null;
  private claimTimerAt = Infinity;

  constructor(opts: SwitchOptions = {}) {
    super();
    this.clock = opts.clock ?? Date.now;
    this.maxFrameSize = opts.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE;
    const ageingMs = opts.ageingMs ?? DEFAULT_AGEING_MS;
    this.sweepIntervalMs = opts.sweepIntervalMs ?? Math.min(DEFAULT_SWEEP_INTERVAL_MS, ageingMs);
    const tableOpts: MacTableOptions<SwitchPort> = {
      ageingMs,
      onMove: (e, from) => this.emit('mac-move', { mac: formatMac(e.mac), vlan: e.vlan, from, to: e.port } satisfies MacMoveEvent),
      onLimit: (reason, mac, vlan, port) => this.limitHit(reason, mac, vlan, port),
      onChange: (port) => this.onMacsChanged?.(port),
    };
    if (opts.maxEntries !== undefined) tableOpts.maxEntries = opts.maxEntries;
    if (opts.maxPerPort !== undefined) tableOpts.maxPerPort = opts.maxPerPort;
    if (opts.moveHoldMs !== undefined) tableOpts.moveHoldMs = opts.moveHoldMs;
    this.macTable = new MacTable(tableOpts);
  }

  get portList(): readonly SwitchPort[] {
    return this.ports;
  }

  /** Attach a port: the switch installs its receiver and forwards what it receives. */
  addPort(port: Port, opts: { name?: string } = {}): SwitchPort {
    const handle = new SwitchPort(this.nextId++, opts.name ?? port.name, port);
    this.ports = [...this.ports, handle];
    // One closure per port, not per frame.
    port.setReceiver((batch) => this.forward(handle, batch));
    this.emit('port-added', handle);
    return handle;
  }

  /** Detach a port and forget its MACs. False if it was not attached. */
  removePort(handle: SwitchPort): boolean {
    if (!handle.attached) return false;
    handle.attached = false;
    handle.port.setReceiver(null);
    this.ports = this.ports.filter((p) => p !== handle);
    this.macTable.flushPort(handle, true, this.clock());
    handle.egress.buf = EMPTY;
    this.emit('port-removed', handle);
    return true;
  }

  /**
   * A port's link went down or came back, as a bridge port's carrier: down
   * withdraws its learned MACs at once (traffic for them floods, and a host
   * that takes one over is learned at its first frame) and stops flooding to it.
   */
  setLinkUp(handle: SwitchPort, up: boolean): void {
    if (!handle.attached || handle.linkUp === up) return;
    handle.linkUp = up;
    if (!up) this.macTable.flushPort(handle, false, this.clock());
    this.emit('link', { port: handle, up } satisfies LinkEvent);
  }

  /** Pin a MAC to a port: never ages, never moves, outside the limits. */
  addStatic(mac: number | string, vlan: number, handle: SwitchPort): void {
    if (!handle.attached) throw new EtherlinkError('ERR_INVALID_ARG_VALUE', `port ${handle.name} is not attached to this switch`);
    this.macTable.addStatic(toMac(mac), vlan, handle, this.clock());
  }

  /** Remove a static entry; false if there was none. */
  removeStatic(mac: number | string, vlan: number): boolean {
    const m = toMac(mac);
    if (this.macTable.get(m, vlan)?.isStatic !== true) return false;
    return this.macTable.remove(m, vlan);
  }

  /** Start the single aging timer (unref'd: it never keeps the process alive). Idempotent. */
  start(): this {
    if (this.timer === null) {
      this.timer = setInterval(() => this.sweep(), this.sweepIntervalMs);
      this.timer.unref();
    }
    return this;
  }

  /** Stop the timers (ageing, MAC claims). */
  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    if (this.claimTimer !== null) clearTimeout(this.claimTimer);
    this.claimTimer = null;
    this.claimTimerAt = Infinity;
  }

  /**
   * MACs a port reports it uses where the switch does not see its frames (end
   * to end): learned under the same policy as a frame's source — limits, the
   * move hold, no group or zero address.
   */
  learnReported(handle: SwitchPort, macs: readonly { mac: number; vlan: number }[]): void {
    if (!handle.attached || !handle.linkUp) return;
    const now = this.clock();
    for (const { mac, vlan } of macs) if (mac !== 0 && !isMulticast(mac)) this.macTable.learn(mac, vlan, handle, now);
    if (this.macTable.pendingClaims > 0) this.scheduleClaims();
  }

  /** Drop expired MACs now; returns how many (the timer does it every few seconds). */
  sweep(): number {
    return this.macTable.sweep(this.clock());
  }

  /** Forward one ingress batch. Public so embedders and benches can drive it directly. */
  forward(ingress: SwitchPort, batch: FrameBatch): void {
    if (!ingress.attached) return;
    const n = batch.count;
    if (this.forwarding) {
      ingress.counters.drops.reentrant += n;
      this.totals.drops.reentrant += n;
      return;
    }
    if (this.onIngress !== null) this.onIngress(ingress, batch);
    this.forwarding = true;
    try {
      const ports = this.ports;
      this.decide(ingress, batch, n, ports);
      // A listener (e.g. on 'mac-move') may have removed the ingress port mid-batch;
      // later frames of the batch must not leave entries pointing at it.
      if (!ingress.attached) this.macTable.flushPort(ingress, true, this.clock());
      this.flush();
    } finally {
      this.forwarding = false;
    }
    if (this.macTable.pendingClaims > 0) this.scheduleClaims();
  }

  /** Grant refused MAC claims when their hold runs out, with no frame needed from the claimant. */
  private scheduleClaims(): void {
    const at = this.macTable.nextClaimAt();
    if (at === undefined || at >= this.claimTimerAt) return;
    if (this.claimTimer !== null) clearTimeout(this.claimTimer);
    this.claimTimerAt = at;
    this.claimTimer = setTimeout(() => {
      this.claimTimer = null;
      this.claimTimerAt = Infinity;
      this.macTable.grantClaims(this.clock());
      this.scheduleClaims();
    }, Math.max(0, at - this.clock()));
    this.claimTimer.unref();
  }

  private decide(ingress: SwitchPort, batch: FrameBatch, n: number, ports: readonly SwitchPort[]): void {
    const { buf, offsets, lengths } = batch;
    // Only ports that get frames are touched (a switch with 1,000 ports must not
    // walk them all per batch); each is sized on first use to the ingress batch,
    // so every egress port still gets exactly one send() per ingress batch.
    const dirty = this.dirty;
    const now = this.clock();
    const table = this.macTable;
    let bytes = 0, runt = 0, oversize = 0, badSource = 0, samePort = 0;
    for (let i = 0; i < n; i++) {
      const off = offsets[i]!;
      const len = lengths[i]!;
      bytes += len;
      if (len < ETHERNET.HEADER_LEN) { runt++; continue; }
      if (len > this.maxFrameSize) { oversize++; continue; }
      const src = readMac(buf, off + ETHERNET.SRC_OFFSET);
      if (isMulticast(src)) { badSource++; continue; }
      const vlan = readVlanId(buf, off, len);
      // A zero source is odd but harmless to forward; it just can't become a destination.
      if (src !== 0) table.learn(src, vlan, ingress, now);
      const dst = readMac(buf, off + ETHERNET.DST_OFFSET);
      if (!isMulticast(dst)) {
        const out = table.lookup(dst, vlan, now);
        if (out !== undefined) {
          if (out === ingress) { samePort++; continue; }
          if (out.egress.count === 0) {
            this.claim(out, buf, n);
            if (this.onUnicast !== null) this.onUnicast(ingress, out);
          }
          out.egress.push(off, len);
          out.pendingBytes += len;
          continue;
        }
      }
      for (let j = 0; j < ports.length; j++) {
        const p = ports[j]!;
        if (p === ingress || !p.linkUp) continue; // split horizon; a down link gets nothing
        if (p.egress.count === 0) this.claim(p, buf, n);
        p.egress.push(off, len);
        p.pendingBytes += len;
        p.pendingFlooded++;
      }
    }
    addRx(ingress.counters, n, bytes, runt, oversize, badSource, samePort);
    addRx(this.totals, n, bytes, runt, oversize, badSource, samePort);
  }

  /** First frame for `p` in this ingress batch: point its egress at the slab and remember to flush it. */
  private claim(p: SwitchPort, buf: Buffer, n: number): void {
    if (p.egress.capacity < n) p.egress = new MutableFrameBatch(buf, n);
    p.egress.buf = buf;
    this.dirty.push(p);
  }

  private flush(): void {
    const t = this.totals;
    const dirty = this.dirty;
    for (let k = 0; k < dirty.length; k++) {
      const p = dirty[k]!;
      const out = p.egress;
      if (out.count > 0 && p.attached) {
        try {
          p.port.send(out);
          p.counters.txFrames += out.count;
          p.counters.txBytes += p.pendingBytes;
          p.counters.flooded += p.pendingFlooded;
          t.txFrames += out.count;
          t.txBytes += p.pendingBytes;
          t.flooded += p.pendingFlooded;
        } catch (error) {
          p.counters.txErrors++;
          t.txErrors++;
          this.emit('port-error', { port: p, error });
        }
      }
      out.clear();
      out.buf = EMPTY; // don't pin the ingress slab past this call
      p.pendingBytes = 0;
      p.pendingFlooded = 0;
    }
    dirty.length = 0;
  }

  private limitHit(reason: LimitReason, mac: number, vlan: number, port: SwitchPort): void {
    const now = this.clock();
    if (now - port.lastLimitEvent < MAC_LIMIT_EVENT_INTERVAL_MS) {
      port.suppressedLimitEvents++;
      return;
    }
    const suppressed = port.suppressedLimitEvents;
    port.lastLimitEvent = now;
    port.suppressedLimitEvents = 0;
    this.emit('mac-limit', { reason, mac: formatMac(mac), vlan, port, suppressed } satisfies MacLimitEvent);
  }

  /** Plain JSON-able status: ports with counters and MACs, the MAC table with ages. */
  snapshot(): SwitchSnapshot {
    const now = this.clock();
    const macTable = this.macTable.entries().map((e): MacStatus => ({
      mac: formatMac(e.mac),
      vlan: e.vlan,
      port: e.port.id,
      portName: e.port.name,
      static: e.isStatic,
      ageSeconds: e.isStatic ? 0 : Math.max(0, Math.floor((now - e.updated) / 1000)),
    }));
    // Grouped in one pass: a filter per port would cost ports x MACs.
    const byPort = new Map<number, MacStatus[]>();
    for (const m of macTable) {
      const list = byPort.get(m.port);
      if (list === undefined) byPort.set(m.port, [m]);
      else list.push(m);
    }
    return {
      ports: this.ports.map((p) => ({
        id: p.id,
        name: p.name,
        linkUp: p.linkUp,
        counters: structuredClone(p.counters),
        macs: byPort.get(p.id) ?? [],
      })),
      macTable,
      macTableCounters: { ...this.macTable.counters },
      totals: structuredClone(this.totals),
    };
  }
}
