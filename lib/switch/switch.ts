// The learning switch: per-frame forwarding decisions over zero-copy views of
// each ingress batch (or, between VLAN-aware ports, over one reused scratch
// slab), per-port egress batches, storm control, the loop guard, counters and status.
import { EventEmitter } from 'node:events';
import { MutableFrameBatch, BATCH_SIZE, type FrameBatch } from '../core/frames.js';
import type { Port } from '../core/port.js';
import {
  ETHERNET, EtherType, copyFrameTagged, copyFrameUntagged, formatMac, isMulticast, readMac, readOuterTci, readVlanId, toMac,
} from '../core/ethernet.js';
import { MacTable, DEFAULT_AGEING_MS, LearnResult, type MacTableOptions, type LimitReason, type MacTableCounters } from './mac-table.js';
import { EtherlinkError } from '../core/errors.js';
import { FlapTracker } from './loop-guard.js';
import { FORM_NONE, FORM_TAGGED, TRANSPARENT, VlanPlan, checkVlanMode, egressForm, formatVlanMode, ingressVlan, type VlanMode } from './vlan.js';

/** 64 KiB payload plus Ethernet header, two VLAN tags (802.1ad + 802.1Q). */
export const DEFAULT_MAX_FRAME_SIZE = 65535 + 18;
/** How often the aging timer sweeps. Lookups already ignore expired entries, so this only reclaims memory and limit slots. */
export const DEFAULT_SWEEP_INTERVAL_MS = 5_000;
/** At most one 'mac-limit' event per port per interval; a MAC flood would otherwise flood the listeners too. */
export const MAC_LIMIT_EVENT_INTERVAL_MS = 10_000;
/**
 * Storm control: broadcast, multicast and unknown-unicast frames a port may
 * send per second (and, by default, in one burst) before the switch drops the
 * rest. Generous for ARP, ND and mDNS; a looping or flooding port hits it.
 */
export const DEFAULT_STORM_LIMIT = 1000;
/** At most one 'storm' event per port per interval. */
export const STORM_EVENT_INTERVAL_MS = 10_000;
/** Loop guard: this many moves of one MAC (or refused claims on it) within FLAP_WINDOW_MS is a loop. */
export const FLAP_THRESHOLD = 10;
/** Loop guard: the window FLAP_THRESHOLD moves must fall in. */
export const FLAP_WINDOW_MS = 1_000;
/** Loop guard: how long a port is blocked the first time. */
export const DEFAULT_LOOP_BLOCK_MS = 60_000;
/** A port blocked again within this long of its last unblock is blocked twice as long as the last time... */
export const LOOP_REBLOCK_WINDOW_MS = 600_000;
/** ...up to this long. */
export const LOOP_BLOCK_MAX_MS = 3_600_000;
/** Loop guard: MACs whose moves are tracked at once; the least recently moved is forgotten first. */
export const FLAP_TRACKED_MACS = 1024;
/** First size of the scratch slab VLAN-aware forwarding writes retagged frames into (it doubles when a batch needs more). */
export const SCRATCH_INITIAL_BYTES = 256 * 1024;
const EMPTY = Buffer.alloc(0);
const TRANSPARENT_PLAN = new VlanPlan(TRANSPARENT);

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
  /** Not in a VLAN of the ingress port: a tag on an access port, a VLAN a trunk doesn't carry, untagged on a trunk without pvid (or a known destination whose port does not carry the VLAN, which addStatic prevents). */
  vlan: number;
  /** Flooded (broadcast, multicast, unknown unicast) beyond the ingress port's storm limit. */
  storm: number;
  /** The ingress port (or a static destination's port) is blocked by the loop guard. */
  blocked: number;
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
  drops: { runt: 0, oversize: 0, badSource: 0, samePort: 0, reentrant: 0, vlan: 0, storm: 0, blocked: 0 },
});

/** What one ingress batch did, summed as the forwarding loop goes and added to the counters once. */
interface RxTally {
  bytes: number;
  runt: number;
  oversize: number;
  badSource: number;
  samePort: number;
  vlan: number;
  storm: number;
  blocked: number;
}

function addRx(c: TrafficCounters, frames: number, t: RxTally): void {
  c.rxFrames += frames;
  c.rxBytes += t.bytes;
  const d = c.drops;
  d.runt += t.runt;
  d.oversize += t.oversize;
  d.badSource += t.badSource;
  d.samePort += t.samePort;
  d.vlan += t.vlan;
  d.storm += t.storm;
  d.blocked += t.blocked;
}

/** Why and until when the loop guard blocks a port. */
export interface PortBlock {
  /** Clock time (ms) the block ends. */
  readonly until: number;
  /** What was seen, for logs and status: the MAC, the ports it moved between, how often, for how long. */
  readonly reason: string;
  /** The flapping MAC, aa:bb:cc:dd:ee:ff. */
  readonly mac: string;
  /** Its switch-internal VLAN. */
  readonly vlan: number;
}

/** The switch's handle for an attached Port. */
export class SwitchPort {
  readonly counters: TrafficCounters = newCounters();
  /** The port's VLAN policy (checked and frozen; transparent unless addPort was given one). */
  readonly vlanMode: VlanMode;
  /** @internal egress batch reused for every ingress batch; views into the ingress slab or the switch's scratch slab. */
  egress = new MutableFrameBatch(EMPTY, BATCH_SIZE);
  /** @internal the egress batch of this ingress batch lives in the scratch slab (set with the first frame). */
  egressInScratch = false;
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
  /** @internal vlanMode compiled for the forwarding path. */
  readonly plan: VlanPlan;
  /** @internal storm control's token bucket: tokens, and when it was last filled. */
  stormTokens = 0;
  /** @internal */
  stormAt = 0;
  /** @internal */
  lastStormEvent = -Infinity;
  /** @internal storm drops not yet reported in a 'storm' event. */
  stormUnreported = 0;
  /** @internal the loop guard's block, or null. */
  block: PortBlock | null = null;
  /** @internal how long the last block was, and when it ended (for doubling a repeat). */
  lastBlockMs = 0;
  /** @internal */
  unblockedAt = -Infinity;

  constructor(readonly id: number, readonly name: string, readonly port: Port, vlanMode: VlanMode = TRANSPARENT) {
    this.vlanMode = checkVlanMode(vlanMode);
    this.plan = this.vlanMode.kind === 'transparent' ? TRANSPARENT_PLAN : new VlanPlan(this.vlanMode);
  }

  /**
   * Non-null while the loop guard blocks the port: it sends nothing into the
   * switch and gets nothing from it until `until` (or Switch.unblock).
   */
  get blocked(): PortBlock | null {
    return this.block;
  }
}

/** The 'mac-move' event: a learned MAC moved to another port; 'mac-move-denied': the move hold kept it on `from`, refusing `to` (once per claimant). */
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

/** The 'storm' event (at most one per port per STORM_EVENT_INTERVAL_MS): storm control dropped flooded frames from `port`. */
export interface StormEvent {
  port: SwitchPort;
  /** Frames dropped since the previous 'storm' event of this port. */
  dropped: number;
}

/** The 'port-blocked' event: the loop guard saw a MAC flap and blocked `port` (see PortBlock). */
export interface PortBlockedEvent {
  port: SwitchPort;
  reason: string;
  mac: string;
  vlan: number;
  /** Clock time (ms) the block ends. */
  until: number;
}

/** The 'port-unblocked' event: a loop-guard block ended (its time ran out, or Switch.unblock). */
export interface PortUnblockedEvent {
  port: SwitchPort;
}

/** Options of a Switch: clock, MAC table limits and ageing, the move hold, storm control, the loop guard. */
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
  /** Broadcast + multicast + unknown-unicast frames per second per ingress port; more are dropped (drops.storm). Default DEFAULT_STORM_LIMIT; 0: off. Known unicast is never limited. */
  stormLimit?: number;
  /** How many such frames a quiet port may send at once. Default stormLimit. */
  stormBurst?: number;
  /** Loop guard: moves of one MAC within flapWindowMs that block a port. Default FLAP_THRESHOLD; 0: off. */
  flapThreshold?: number;
  /** Loop guard: see flapThreshold. Default FLAP_WINDOW_MS. */
  flapWindowMs?: number;
  /** Loop guard: how long a port is blocked (doubled for a repeat offender, up to LOOP_BLOCK_MAX_MS). Default DEFAULT_LOOP_BLOCK_MS. */
  loopBlockMs?: number;
  /**
   * Where SwitchPort ids come from (default 1, 2, 3, ... per switch). Several
   * switches given one counter number their ports uniquely among them; ids
   * must grow, since the loop guard blocks the newest port (highest id).
   */
  portIds?: () => number;
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

/** One port as status shows it. */
export interface PortStatus {
  id: number;
  name: string;
  linkUp: boolean;
  /** formatVlanMode of its mode: 'transparent', 'access 10', 'trunk 10,20 pvid 1'. */
  vlan: string;
  /** Present while the loop guard blocks it. */
  blocked?: { reason: string; remainingS: number };
  counters: TrafficCounters;
  macs: MacStatus[];
}

/** The state of a Switch as plain JSON: ports, MAC table, counters. */
export interface SwitchSnapshot {
  ports: PortStatus[];
  macTable: MacStatus[];
  macTableCounters: MacTableCounters;
  totals: TrafficCounters;
}

/**
 * The learning switch: a MAC table and a forwarding decision per frame, one
 * send per egress port per batch.
 *
 * Ingress: a frame's switch-internal VLAN V (the MAC table's key) comes from
 * the ingress port's mode (ingressVlan); a frame the port may not send is
 * dropped (drops.vlan). Egress: a port gets V only if its mode says so
 * (egressForm), tagged or untagged. A known unicast destination outside V
 * (only a static entry can be: learning keeps the two consistent) is dropped,
 * not flooded: flooding would show it to ports that never asked for it.
 *
 * Memory: while every port is transparent, egress batches are views into the
 * ingress slab (zero copy, the frames leave as they came). Once a port has a
 * VLAN mode, an egress port uses the switch's scratch slab for a whole ingress
 * batch when it or the ingress port is VLAN-aware (one `buf` per batch): each
 * frame's tagged and untagged forms are written there at most once, the first
 * time an egress port needs them, and shared by every other port that does.
 * The slab is reused for every batch and only grows (doubling) when a batch
 * needs more room than any before.
 *
 * Guards: storm control drops flooded frames beyond stormLimit per second per
 * ingress port (known unicast is never limited). The loop guard watches MACs
 * seen on a port other than their entry's: flapThreshold such moves of one
 * (MAC, VLAN) within flapWindowMs block the newest port involved (highest id;
 * never the owner of a claim the move hold refused, since that owner is the
 * one using the MAC) for loopBlockMs, doubling for a repeat within
 * LOOP_REBLOCK_WINDOW_MS up to LOOP_BLOCK_MAX_MS. A blocked port sends and
 * gets nothing and its learned MACs are flushed.
 *
 * Events: 'port-added', 'port-removed', 'link' (LinkEvent), 'mac-move'
 * and 'mac-move-denied' (MacMoveEvent), 'mac-limit' (MacLimitEvent), 'storm' (StormEvent),
 * 'port-blocked' (PortBlockedEvent), 'port-unblocked' (PortUnblockedEvent),
 * 'port-error'.
 */
export class Switch extends EventEmitter {
  readonly macTable: MacTable<SwitchPort>;
  readonly totals: TrafficCounters = newCounters();
  readonly maxFrameSize: number;
  /** Flooded frames per second per ingress port; 0: storm control is off. */
  readonly stormLimit: number;
  /** The storm token bucket's capacity. */
  readonly stormBurst: number;
  /** MAC moves within flapWindowMs that block a port; 0: the loop guard is off. */
  readonly flapThreshold: number;
  /** The window flapThreshold moves must fall in. */
  readonly flapWindowMs: number;
  /** The first block of a port lasts this long. */
  readonly loopBlockMs: number;
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
  private readonly portIds: () => number;
  private forwarding = false;
  /** Egress ports with frames in the batch being forwarded. */
  private readonly dirty: SwitchPort[] = [];
  private timer: NodeJS.Timeout | null = null;
  /** Fires when the earliest refused MAC claim may be granted. */
  private claimTimer: NodeJS.Timeout | null = null;
  private claimTimerAt = Infinity;
  private readonly tally: RxTally = { bytes: 0, runt: 0, oversize: 0, badSource: 0, samePort: 0, vlan: 0, storm: 0, blocked: 0 };
  /** Attached ports with a VLAN mode; 0 keeps forwarding on the zero-copy path. */
  private vlanPorts = 0;
  private scratch: Buffer = EMPTY;
  private scratchUsed = 0;
  // Where the frame being forwarded sits in the scratch slab in each form (-1: not written yet).
  private taggedAt = -1;
  private taggedLen = 0;
  private untaggedAt = -1;
  private untaggedLen = 0;
  private readonly flaps: FlapTracker<SwitchPort> | null;
  /** The previous owner of the entry the last learn() moved (onMove tells it). */
  private movedFrom: SwitchPort | null = null;
  /** The earliest end of a block; the forwarding path compares one number. */
  private nextUnblockAt = Infinity;

  constructor(opts: SwitchOptions = {}) {
    super();
    this.clock = opts.clock ?? Date.now;
    let nextId = 1;
    this.portIds = opts.portIds ?? (() => nextId++);
    this.maxFrameSize = opts.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE;
    this.stormLimit = atLeast('stormLimit', opts.stormLimit ?? DEFAULT_STORM_LIMIT, 0);
    this.stormBurst = atLeast('stormBurst', opts.stormBurst ?? Math.max(1, this.stormLimit), 1);
    this.flapThreshold = atLeast('flapThreshold', opts.flapThreshold ?? FLAP_THRESHOLD, 0, true);
    this.flapWindowMs = atLeast('flapWindowMs', opts.flapWindowMs ?? FLAP_WINDOW_MS, 1);
    this.loopBlockMs = atLeast('loopBlockMs', opts.loopBlockMs ?? DEFAULT_LOOP_BLOCK_MS, 1);
    this.flaps = this.flapThreshold > 0 ? new FlapTracker<SwitchPort>(this.flapThreshold, this.flapWindowMs, FLAP_TRACKED_MACS) : null;
    const ageingMs = opts.ageingMs ?? DEFAULT_AGEING_MS;
    this.sweepIntervalMs = opts.sweepIntervalMs ?? Math.min(DEFAULT_SWEEP_INTERVAL_MS, ageingMs);
    const tableOpts: MacTableOptions<SwitchPort> = {
      ageingMs,
      onMove: (e, from) => {
        this.movedFrom = from;
        this.emit('mac-move', { mac: formatMac(e.mac), vlan: e.vlan, from, to: e.port } satisfies MacMoveEvent);
      },
      onLimit: (reason, mac, vlan, port) => this.limitHit(reason, mac, vlan, port),
      onMoveDenied: (e, claimant) => this.emit('mac-move-denied', { mac: formatMac(e.mac), vlan: e.vlan, from: e.port, to: claimant } satisfies MacMoveEvent),
      onChange: (port) => this.onMacsChanged?.(port),
    };
    if (opts.maxEntries !== undefined) tableOpts.maxEntries = opts.maxEntries;
    if (opts.maxPerPort !== undefined) tableOpts.maxPerPort = opts.maxPerPort;
    if (opts.moveHoldMs !== undefined) tableOpts.moveHoldMs = opts.moveHoldMs;
    this.macTable = new MacTable(tableOpts);
  }

  /** The attached ports in the order they were added (a new array after each change, so it is safe to keep while iterating). */
  get portList(): readonly SwitchPort[] {
    return this.ports;
  }

  /**
   * Attach a port: the switch installs its receiver and forwards what it
   * receives. `vlan` gives its VLAN policy (default transparent); a bad mode
   * throws ERR_INVALID_ARG_VALUE. `maxMacs` is its own learned-MAC limit
   * instead of the table's maxPerPort (a VXLAN VTEP stands for many hosts).
   */
  addPort(port: Port, opts: { name?: string; vlan?: VlanMode; maxMacs?: number } = {}): SwitchPort {
    const handle = new SwitchPort(this.portIds(), opts.name ?? port.name, port, opts.vlan ?? TRANSPARENT);
    if (opts.maxMacs !== undefined) this.macTable.setPortLimit(handle, opts.maxMacs);
    handle.stormTokens = this.stormBurst;
    handle.stormAt = this.clock();
    this.ports = [...this.ports, handle];
    if (handle.plan.kind !== TRANSPARENT_PLAN.kind) this.vlanPorts++;
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
    if (handle.plan.kind !== TRANSPARENT_PLAN.kind) this.vlanPorts--;
    this.macTable.flushPort(handle, true, this.clock());
    this.macTable.setPortLimit(handle, undefined);
    this.flaps?.forgetPort(handle);
    if (this.movedFrom === handle) this.movedFrom = null;
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

  /**
   * Pin a MAC to a port: never ages, never moves, outside the limits. `vlan`
   * is the switch-internal VLAN; a port whose mode does not carry it throws
   * ERR_INVALID_ARG_VALUE (frames for the MAC could never reach it).
   */
  addStatic(mac: number | string, vlan: number, handle: SwitchPort): void {
    if (!handle.attached) throw new EtherlinkError('ERR_INVALID_ARG_VALUE', `port ${handle.name} is not attached to this switch`);
    if (egressForm(handle.vlanMode, vlan) === 'none') {
      throw new EtherlinkError('ERR_INVALID_ARG_VALUE', `port ${handle.name} (${formatVlanMode(handle.vlanMode)}) does not carry VLAN ${vlan}: pin the MAC in one of its VLANs`);
    }
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
   * move hold, no group or zero address. `vlan` is as the port's own device
   * sees it (0: untagged) and is translated like a frame's tag (ingressVlan):
   * an access port's 0 is its VLAN, a trunk's 0 its pvid; what the port could
   * not send is ignored. Nothing is learned from a blocked port.
   */
  learnReported(handle: SwitchPort, macs: readonly { mac: number; vlan: number }[]): void {
    if (!handle.attached || !handle.linkUp || handle.block !== null) return;
    const now = this.clock();
    for (const { mac, vlan } of macs) {
      if (mac === 0 || isMulticast(mac)) continue;
      const v = ingressVlan(handle.vlanMode, vlan);
      if (v >= 0) this.macTable.learn(mac, v, handle, now);
    }
    if (this.macTable.pendingClaims > 0) this.scheduleClaims();
  }

  /**
   * The live MACs behind `handle` with their VLAN as the port's own device
   * sees it (the inverse of learnReported): an access port's VLAN and a
   * trunk's pvid are 0 (untagged).
   */
  macsAsSeenBy(handle: SwitchPort, now: number = this.clock()): { mac: number; vlan: number }[] {
    const out: { mac: number; vlan: number }[] = [];
    for (const e of this.macTable.entriesOf(handle, now)) {
      const form = egressForm(handle.vlanMode, e.vlan);
      if (form !== 'none') out.push({ mac: e.mac, vlan: form === 'untagged' ? 0 : e.vlan });
    }
    return out;
  }

  /** Drop expired MACs now, and end loop-guard blocks whose time is up; returns how many MACs (the timer does it every few seconds). */
  sweep(): number {
    const now = this.clock();
    if (now >= this.nextUnblockAt) this.unblockExpired(now);
    return this.macTable.sweep(now);
  }

  /** End a loop-guard block now (an operator fixed the loop). False if the port was not blocked. */
  unblock(handle: SwitchPort): boolean {
    if (handle.block === null) return false;
    this.release(handle, this.clock());
    this.nextUnblockAt = this.earliestUnblock();
    return true;
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
    const now = this.clock();
    if (now >= this.nextUnblockAt) {
      this.unblockExpired(now);
      if (!ingress.attached) return; // a 'port-unblocked' listener removed it
    }
    if (ingress.block !== null) {
      this.dropBlocked(ingress, batch, n);
      return;
    }
    this.forwarding = true;
    try {
      const ports = this.ports;
      if (this.vlanPorts === 0) this.decide(ingress, batch, n, ports, now);
      else this.decideVlan(ingress, batch, n, ports, now);
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

  /** The forwarding loop while every port is transparent: egress batches are views into the ingress slab. */
  private decide(ingress: SwitchPort, batch: FrameBatch, n: number, ports: readonly SwitchPort[], now: number): void {
    const { buf, offsets, lengths } = batch;
    // Only ports that get frames are touched (a switch with 1,000 ports must not
    // walk them all per batch); each is sized on first use to the ingress batch,
    // so every egress port still gets exactly one send() per ingress batch.
    const table = this.macTable;
    const stormOn = this.stormLimit > 0;
    let tokens = stormOn ? this.refillStorm(ingress, now) : 0;
    let bytes = 0, runt = 0, oversize = 0, badSource = 0, samePort = 0, storm = 0, blocked = 0;
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
      if (src !== 0) {
        const learned = table.learn(src, vlan, ingress, now);
        if ((learned === LearnResult.Moved || learned === LearnResult.MoveDenied) && this.flapped(src, vlan, ingress, learned, now)) {
          // The loop guard blocked the ingress port itself: nothing more from it.
          blocked += n - i;
          for (let j = i + 1; j < n; j++) bytes += lengths[j]!;
          break;
        }
      }
      const dst = readMac(buf, off + ETHERNET.DST_OFFSET);
      if (!isMulticast(dst)) {
        const out = table.lookup(dst, vlan, now);
        if (out !== undefined) {
          if (out === ingress) { samePort++; continue; }
          if (out.block !== null) { blocked++; continue; }
          if (out.egress.count === 0) {
            this.claim(out, buf, n);
            if (this.onUnicast !== null) this.onUnicast(ingress, out);
          }
          out.egress.push(off, len);
          out.pendingBytes += len;
          continue;
        }
      }
      if (stormOn) {
        if (tokens < 1) { storm++; continue; }
        tokens -= 1;
      }
      for (let j = 0; j < ports.length; j++) {
        const p = ports[j]!;
        if (p === ingress || !p.linkUp || p.block !== null) continue; // split horizon; a down or blocked port gets nothing
        if (p.egress.count === 0) this.claim(p, buf, n);
        p.egress.push(off, len);
        p.pendingBytes += len;
        p.pendingFlooded++;
      }
    }
    if (stormOn) ingress.stormTokens = tokens;
    this.count(ingress, n, now, bytes, runt, oversize, badSource, samePort, 0, storm, blocked);
  }

  /**
   * The forwarding loop once a port has a VLAN mode: the same decisions, with
   * the frame's VLAN from the ingress port's mode, egress filtered and each
   * frame written into the scratch slab in the forms egress ports need.
   */
  private decideVlan(ingress: SwitchPort, batch: FrameBatch, n: number, ports: readonly SwitchPort[], now: number): void {
    const { buf, offsets, lengths } = batch;
    const table = this.macTable;
    const inPlan = ingress.plan;
    const inAware = inPlan.kind !== TRANSPARENT_PLAN.kind;
    const stormOn = this.stormLimit > 0;
    let tokens = stormOn ? this.refillStorm(ingress, now) : 0;
    let bytes = 0, runt = 0, oversize = 0, badSource = 0, samePort = 0, vlanDrop = 0, storm = 0, blocked = 0;
    this.scratchUsed = 0;
    for (let i = 0; i < n; i++) {
      const off = offsets[i]!;
      const len = lengths[i]!;
      bytes += len;
      if (len < ETHERNET.HEADER_LEN) { runt++; continue; }
      if (len > this.maxFrameSize) { oversize++; continue; }
      const src = readMac(buf, off + ETHERNET.SRC_OFFSET);
      if (isMulticast(src)) { badSource++; continue; }
      // A VLAN-aware port's tag is 802.1Q (0x8100); an 802.1ad S-tag there is payload, as on a C-VLAN switch.
      const tci = inAware && buf.readUInt16BE(off + ETHERNET.TYPE_OFFSET) !== EtherType.VLAN ? -1 : readOuterTci(buf, off, len);
      const vlan = inPlan.ingress(tci < 0 ? 0 : tci & 0x0fff);
      if (vlan < 0) { vlanDrop++; continue; }
      if (src !== 0) {
        const learned = table.learn(src, vlan, ingress, now);
        if ((learned === LearnResult.Moved || learned === LearnResult.MoveDenied) && this.flapped(src, vlan, ingress, learned, now)) {
          blocked += n - i;
          for (let j = i + 1; j < n; j++) bytes += lengths[j]!;
          break;
        }
      }
      this.taggedAt = -1;
      this.untaggedAt = -1;
      const dst = readMac(buf, off + ETHERNET.DST_OFFSET);
      if (!isMulticast(dst)) {
        const out = table.lookup(dst, vlan, now);
        if (out !== undefined) {
          if (out === ingress) { samePort++; continue; }
          if (out.block !== null) { blocked++; continue; }
          const form = out.plan.egress(vlan);
          if (form === FORM_NONE) { vlanDrop++; continue; }
          if (out.egress.count === 0) {
            this.claimVlan(out, inAware, buf, n);
            if (this.onUnicast !== null) this.onUnicast(ingress, out);
          }
          this.pushForm(out, form, buf, off, len, tci, vlan);
          continue;
        }
      }
      if (stormOn) {
        if (tokens < 1) { storm++; continue; }
        tokens -= 1;
      }
      for (let j = 0; j < ports.length; j++) {
        const p = ports[j]!;
        if (p === ingress || !p.linkUp || p.block !== null) continue;
        const form = p.plan.egress(vlan);
        if (form === FORM_NONE) continue;
        if (p.egress.count === 0) this.claimVlan(p, inAware, buf, n);
        this.pushForm(p, form, buf, off, len, tci, vlan);
        p.pendingFlooded++;
      }
    }
    if (stormOn) ingress.stormTokens = tokens;
    this.count(ingress, n, now, bytes, runt, oversize, badSource, samePort, vlanDrop, storm, blocked);
  }

  /** First frame for `p` in this ingress batch: point its egress at the slab and remember to flush it. */
  private claim(p: SwitchPort, buf: Buffer, n: number): void {
    if (p.egress.capacity < n) p.egress = new MutableFrameBatch(buf, n);
    p.egress.buf = buf;
    this.dirty.push(p);
  }

  /** claim() for VLAN-aware forwarding: between two transparent ports still a view of the ingress slab, else the scratch slab. */
  private claimVlan(p: SwitchPort, inAware: boolean, buf: Buffer, n: number): void {
    this.claim(p, buf, n);
    // The scratch slab may still grow during this batch: flush() points the batch at it.
    p.egressInScratch = inAware || p.plan.kind !== TRANSPARENT_PLAN.kind;
  }

  /** Add the frame to `p`'s egress batch in `form` (FORM_TAGGED or FORM_UNTAGGED), writing that form into scratch if no port needed it yet. */
  private pushForm(p: SwitchPort, form: number, buf: Buffer, off: number, len: number, tci: number, vlan: number): void {
    if (!p.egressInScratch) {
      // Transparent to transparent: the frame leaves as it came.
      p.egress.push(off, len);
      p.pendingBytes += len;
      return;
    }
    let at: number, l: number;
    if (form === FORM_TAGGED) {
      if (this.taggedAt < 0) this.writeTagged(buf, off, len, tci, vlan);
      at = this.taggedAt;
      l = this.taggedLen;
    } else {
      if (this.untaggedAt < 0) this.writeUntagged(buf, off, len, tci, vlan);
      at = this.untaggedAt;
      l = this.untaggedLen;
    }
    p.egress.push(at, l);
    p.pendingBytes += l;
  }

  /** The frame with an outer tag of `vlan`: as it is when it has one, else with an 802.1Q tag added (PCP 0); a priority tag gets the VID and keeps its PCP/DEI. */
  private writeTagged(buf: Buffer, off: number, len: number, tci: number, vlan: number): void {
    const at = this.reserve(len + ETHERNET.VLAN_TAG_LEN);
    const s = this.scratch;
    let l = len;
    if (tci < 0) {
      l = copyFrameTagged(buf, off, len, s, at, EtherType.VLAN, vlan);
    } else {
      buf.copy(s, at, off, off + len);
      if ((tci & 0x0fff) !== vlan) s.writeUInt16BE((tci & 0xf000) | vlan, at + ETHERNET.HEADER_LEN);
    }
    this.taggedAt = at;
    this.taggedLen = l;
    this.scratchUsed = at + l;
  }

  /** The frame without its outer tag (4 bytes shorter); as it is when untagged, or VLAN 0 (a transparent port's priority tag stays). */
  private writeUntagged(buf: Buffer, off: number, len: number, tci: number, vlan: number): void {
    const at = this.reserve(len);
    const s = this.scratch;
    let l = len;
    if (tci < 0 || vlan === 0) buf.copy(s, at, off, off + len);
    else l = copyFrameUntagged(buf, off, len, s, at);
    this.untaggedAt = at;
    this.untaggedLen = l;
    this.scratchUsed = at + l;
  }

  /** Room for `bytes` more in the scratch slab; returns where. Grows (doubling, keeping what this batch wrote) only when a batch needs more than ever before. */
  private reserve(bytes: number): number {
    const at = this.scratchUsed;
    if (at + bytes > this.scratch.length) {
      const grown = Buffer.allocUnsafe(Math.max(SCRATCH_INITIAL_BYTES, 2 * this.scratch.length, at + bytes));
      this.scratch.copy(grown, 0, 0, at);
      this.scratch = grown;
    }
    return at;
  }

  /** Add one batch's tallies to the port and the totals, and report storm drops. */
  private count(
    ingress: SwitchPort, n: number, now: number,
    bytes: number, runt: number, oversize: number, badSource: number, samePort: number, vlan: number, storm: number, blocked: number,
  ): void {
    const t = this.tally;
    t.bytes = bytes;
    t.runt = runt;
    t.oversize = oversize;
    t.badSource = badSource;
    t.samePort = samePort;
    t.vlan = vlan;
    t.storm = storm;
    t.blocked = blocked;
    addRx(ingress.counters, n, t);
    addRx(this.totals, n, t);
    if (storm > 0) this.stormHit(ingress, storm, now);
  }

  /** A blocked port's batch: counted as received and dropped. */
  private dropBlocked(ingress: SwitchPort, batch: FrameBatch, n: number): void {
    let bytes = 0;
    for (let i = 0; i < n; i++) bytes += batch.lengths[i]!;
    for (const c of [ingress.counters, this.totals]) {
      c.rxFrames += n;
      c.rxBytes += bytes;
      c.drops.blocked += n;
    }
  }

  private flush(): void {
    const t = this.totals;
    const dirty = this.dirty;
    for (let k = 0; k < dirty.length; k++) {
      const p = dirty[k]!;
      const out = p.egress;
      if (p.egressInScratch) {
        out.buf = this.scratch;
        p.egressInScratch = false;
      }
      // A port the loop guard blocked during this batch gets none of it.
      if (out.count > 0 && p.attached && p.block === null) {
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

  // ---------------------------------------------------------------- storm control

  /** Refill `p`'s bucket for the time since its last batch; returns the tokens. */
  private refillStorm(p: SwitchPort, now: number): number {
    const elapsed = now - p.stormAt;
    if (elapsed > 0) {
      p.stormTokens = Math.min(this.stormBurst, p.stormTokens + (elapsed * this.stormLimit) / 1000);
      p.stormAt = now;
    } else if (elapsed < 0) {
      // The clock was stepped back: refill from now on, rather than not until it catches up.
      p.stormAt = now;
    }
    return p.stormTokens;
  }

  private stormHit(p: SwitchPort, dropped: number, now: number): void {
    p.stormUnreported += dropped;
    if (now - p.lastStormEvent < STORM_EVENT_INTERVAL_MS) return;
    const e: StormEvent = { port: p, dropped: p.stormUnreported };
    p.lastStormEvent = now;
    p.stormUnreported = 0;
    this.emit('storm', e);
  }

  // ---------------------------------------------------------------- loop guard

  /**
   * A learned MAC came from a port other than its entry's (it moved, or the
   * move hold refused the claim). Returns true when this blocked `claimant`.
   */
  private flapped(mac: number, vlan: number, claimant: SwitchPort, learned: LearnResult, now: number): boolean {
    if (this.flaps === null) return false;
    const denied = learned === LearnResult.MoveDenied;
    const entry = denied ? this.macTable.get(mac, vlan) : undefined;
    const owner = denied ? (entry?.port ?? null) : this.movedFrom;
    this.movedFrom = null;
    const rec = this.flaps.note(mac, vlan, owner, claimant, denied, now, entry?.updated ?? -1);
    if (rec === null) return false;
    // The newest port involved is the likeliest to have closed the loop. Not
    // the owner of a refused claim, though: the hold kept the MAC with it
    // because it is using it, and a port spoofing that MAC must not get its
    // victim blocked.
    const involved = new Set<SwitchPort>();
    let victim: SwitchPort | null = null;
    for (let i = 0; i < rec.count; i++) {
      for (const [p, candidate] of [[rec.owners[i]!, rec.denied[i] === 0], [rec.claimants[i]!, true]] as const) {
        if (p === null || !p.attached) continue;
        involved.add(p);
        if (candidate && p.block === null && (victim === null || p.id > victim.id)) victim = p;
      }
    }
    this.flaps.reset(rec);
    if (victim === null) return false;
    const blocked = victim;
    this.blockPort(blocked, mac, vlan, [...involved].sort((a, b) => a.id - b.id), now);
    return blocked === claimant;
  }

  private blockPort(p: SwitchPort, mac: number, vlan: number, involved: readonly SwitchPort[], now: number): void {
    const repeat = p.lastBlockMs > 0 && now - p.unblockedAt < LOOP_REBLOCK_WINDOW_MS;
    const ms = repeat ? Math.max(this.loopBlockMs, Math.min(LOOP_BLOCK_MAX_MS, 2 * p.lastBlockMs)) : this.loopBlockMs;
    const macText = formatMac(mac);
    const names = involved.map((q) => q.name);
    const between = names.length > 1 ? `${names.slice(0, -1).join(', ')} and ${names.at(-1)}` : `${names[0] ?? p.name} and a port since removed`;
    const reason = `MAC ${macText} (VLAN ${vlan}) moved between ${between} ${this.flapThreshold} times in ${seconds(this.flapWindowMs)}: a loop? blocked for ${seconds(ms)}`;
    const until = now + ms;
    p.block = { until, reason, mac: macText, vlan };
    p.lastBlockMs = ms;
    this.nextUnblockAt = Math.min(this.nextUnblockAt, until);
    this.macTable.flushPort(p, false, now);
    this.emit('port-blocked', { port: p, reason, mac: macText, vlan, until } satisfies PortBlockedEvent);
  }

  private release(p: SwitchPort, now: number): void {
    p.block = null;
    p.unblockedAt = now;
    // Its bucket filled while it was blocked; it starts afresh like a new port.
    p.stormTokens = this.stormBurst;
    p.stormAt = now;
    this.emit('port-unblocked', { port: p } satisfies PortUnblockedEvent);
  }

  private unblockExpired(now: number): void {
    const due = this.ports.filter((p) => p.block !== null && p.block.until <= now);
    for (const p of due) this.release(p, now);
    this.nextUnblockAt = this.earliestUnblock();
  }

  private earliestUnblock(): number {
    let next = Infinity;
    for (const p of this.ports) if (p.block !== null) next = Math.min(next, p.block.until);
    return next;
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

  /** Plain JSON-able status: ports with VLAN modes, blocks, counters and MACs, the MAC table with ages. */
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
      ports: this.ports.map((p): PortStatus => ({
        id: p.id,
        name: p.name,
        linkUp: p.linkUp,
        vlan: formatVlanMode(p.vlanMode),
        ...(p.block !== null ? { blocked: { reason: p.block.reason, remainingS: Math.max(0, Math.ceil((p.block.until - now) / 1000)) } } : {}),
        counters: structuredClone(p.counters),
        macs: byPort.get(p.id) ?? [],
      })),
      macTable,
      macTableCounters: { ...this.macTable.counters },
      totals: structuredClone(this.totals),
    };
  }
}

/** `ms` as '1 s', '0.5 s', '60 s' for messages. */
function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))} s`;
}

function atLeast(name: string, value: number, min: number, integer = false): number {
  if (!(value >= min) || !Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    throw new EtherlinkError('ERR_INVALID_ARG_VALUE', `Switch ${name} must be ${integer ? 'an integer' : 'a number'} >= ${min}, got ${value}`);
  }
  return value;
}
