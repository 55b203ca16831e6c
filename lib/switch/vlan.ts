// Per-port VLAN membership, as a managed switch or the Linux bridge with
// vlan_filtering has it: transparent, access or trunk ports, the allow-file
// options that choose them, and the ingress/egress decisions the Switch makes.
import { EtherlinkError } from '../core/errors.js';
import { ETHERNET } from '../core/ethernet.js';

/**
 * How a switch port treats VLAN tags.
 * - `transparent`: no VLAN policy (the default). A frame's VLAN is its outer
 *   tag's VID (0 untagged) and it leaves every port as it came.
 * - `access`: the port is in one VLAN and speaks untagged frames only; the
 *   switch adds and removes the tag for it. Tagged frames it sends are dropped.
 * - `trunk`: the port carries the listed VLANs tagged; untagged frames belong
 *   to `pvid` (if set, otherwise they are dropped) and leave it untagged.
 *   `pvid` need not be in the list: it is allowed either way.
 *
 * VIDs are 1..4094.
 */
export type VlanMode =
  | { kind: 'transparent' }
  | { kind: 'access'; vlan: number }
  | { kind: 'trunk'; vlans: readonly number[]; pvid?: number };

/** How a frame of one VLAN leaves a port: not at all, with an 802.1Q tag, or untagged. */
export type EgressForm = 'none' | 'tagged' | 'untagged';

/** The default mode of a port: no VLAN policy. */
export const TRANSPARENT: VlanMode = Object.freeze({ kind: 'transparent' });

/** Smallest VLAN id a port may be configured with (0 is a priority tag, not a VLAN). */
export const VLAN_ID_MIN = 1;
/** Largest VLAN id a port may be configured with (4095 is reserved). */
export const VLAN_ID_MAX = ETHERNET.MAX_VLAN_ID;

// ---------------------------------------------------------------- decisions

// The decisions are written once, over primitives, so the pure helpers below
// (taking a VlanMode) and the compiled VlanPlan the forwarding path uses
// (taking a bitmap) cannot disagree. `listed` is "vid is in the trunk list".
const KIND_TRANSPARENT = 0;
const KIND_ACCESS = 1;
const KIND_TRUNK = 2;
/** @internal form codes of the forwarding path */
export const FORM_NONE = 0;
/** @internal */
export const FORM_TAGGED = 1;
/** @internal */
export const FORM_UNTAGGED = 2;
type FormCode = typeof FORM_NONE | typeof FORM_TAGGED | typeof FORM_UNTAGGED;

function ingressOf(kind: number, access: number, pvid: number, listed: boolean, vid: number): number {
  if (kind === KIND_TRANSPARENT) return vid;
  if (kind === KIND_ACCESS) return vid === 0 ? access : -1;
  if (vid === 0) return pvid === 0 ? -1 : pvid;
  return listed || vid === pvid ? vid : -1;
}

function egressOf(kind: number, access: number, pvid: number, listed: boolean, v: number): FormCode {
  if (kind === KIND_TRANSPARENT) return v === 0 ? FORM_UNTAGGED : FORM_TAGGED;
  if (kind === KIND_ACCESS) return v === access ? FORM_UNTAGGED : FORM_NONE;
  if (v !== 0 && v === pvid) return FORM_UNTAGGED;
  return listed && v !== 0 ? FORM_TAGGED : FORM_NONE;
}

const FORM_NAMES: readonly EgressForm[] = ['none', 'tagged', 'untagged'];

function kindOf(mode: VlanMode): number {
  return mode.kind === 'transparent' ? KIND_TRANSPARENT : mode.kind === 'access' ? KIND_ACCESS : KIND_TRUNK;
}

/**
 * The switch-internal VLAN of a frame arriving on a port in `mode`, whose
 * outer tag has VLAN id `vid` (0: untagged, or a priority tag). -1: the port
 * does not accept it (drop). Transparent ports keep `vid` as it is (0 stays 0).
 */
export function ingressVlan(mode: VlanMode, vid: number): number {
  const pvid = mode.kind === 'trunk' ? (mode.pvid ?? 0) : 0;
  const listed = mode.kind === 'trunk' && mode.vlans.includes(vid);
  return ingressOf(kindOf(mode), mode.kind === 'access' ? mode.vlan : 0, pvid, listed, vid);
}

/**
 * Whether and how a frame of switch-internal VLAN `v` leaves a port in `mode`:
 * a transparent port gets every VLAN (tagged unless `v` is 0), an access port
 * only its own (untagged), a trunk its listed VLANs tagged and its pvid untagged.
 */
export function egressForm(mode: VlanMode, v: number): EgressForm {
  const pvid = mode.kind === 'trunk' ? (mode.pvid ?? 0) : 0;
  const listed = mode.kind === 'trunk' && mode.vlans.includes(v);
  return FORM_NAMES[egressOf(kindOf(mode), mode.kind === 'access' ? mode.vlan : 0, pvid, listed, v)]!;
}

/**
 * A VlanMode compiled for the forwarding path: the same decisions as
 * ingressVlan and egressForm, with trunk membership in a bitmap instead of a
 * list search. @internal
 */
export class VlanPlan {
  /** 0 transparent, 1 access, 2 trunk. */
  readonly kind: number;
  private readonly access: number;
  private readonly pvid: number;
  /** One bit per VID, trunk ports only. */
  private readonly listed: Uint32Array;

  constructor(mode: VlanMode) {
    this.kind = kindOf(mode);
    this.access = mode.kind === 'access' ? mode.vlan : 0;
    this.pvid = mode.kind === 'trunk' ? (mode.pvid ?? 0) : 0;
    this.listed = new Uint32Array(4096 / 32);
    if (mode.kind === 'trunk') for (const v of mode.vlans) this.listed[v >>> 5]! |= 1 << (v & 31);
  }

  /** See ingressVlan. */
  ingress(vid: number): number {
    return ingressOf(this.kind, this.access, this.pvid, (this.listed[vid >>> 5]! & (1 << (vid & 31))) !== 0, vid);
  }

  /** See egressForm; a FORM_* code. */
  egress(v: number): FormCode {
    return egressOf(this.kind, this.access, this.pvid, (this.listed[v >>> 5]! & (1 << (v & 31))) !== 0, v);
  }
}

// ---------------------------------------------------------------- modes as text

/** 'transparent', 'access 10', 'trunk 10,20' or 'trunk 10,20 pvid 1': how status shows a port's mode. */
export function formatVlanMode(m: VlanMode): string {
  if (m.kind === 'transparent') return 'transparent';
  if (m.kind === 'access') return `access ${m.vlan}`;
  return `trunk ${m.vlans.join(',')}${m.pvid === undefined ? '' : ` pvid ${m.pvid}`}`;
}

/** The same policy: same kind, VLAN, pvid, and trunk VLANs in any order. */
export function sameVlanMode(a: VlanMode, b: VlanMode): boolean {
  if (a.kind === 'transparent') return b.kind === 'transparent';
  if (a.kind === 'access') return b.kind === 'access' && a.vlan === b.vlan;
  if (b.kind !== 'trunk' || a.pvid !== b.pvid) return false;
  const as = new Set(a.vlans);
  const bs = new Set(b.vlans);
  return as.size === bs.size && [...as].every((v) => bs.has(v));
}

const isVid = (v: number): boolean => Number.isInteger(v) && v >= VLAN_ID_MIN && v <= VLAN_ID_MAX;

/**
 * A checked, frozen copy of `mode` (the switch keeps its own, so a caller
 * changing the object later changes nothing). Throws ERR_INVALID_ARG_VALUE
 * naming the problem: a VID outside 1..4094, an empty or repeating trunk list.
 */
export function checkVlanMode(mode: VlanMode): VlanMode {
  const bad = (what: string): never => {
    throw new EtherlinkError('ERR_INVALID_ARG_VALUE', `VLAN mode ${JSON.stringify(mode)}: ${what}`);
  };
  switch (mode?.kind) {
    case 'transparent':
      return TRANSPARENT;
    case 'access':
      if (!isVid(mode.vlan)) bad(`access VLAN ${mode.vlan} is not a VLAN id (${VLAN_ID_MIN}..${VLAN_ID_MAX})`);
      return Object.freeze({ kind: 'access', vlan: mode.vlan });
    case 'trunk': {
      if (!Array.isArray(mode.vlans) || mode.vlans.length === 0) bad('a trunk lists at least one VLAN');
      for (const v of mode.vlans) if (!isVid(v)) bad(`trunk VLAN ${v} is not a VLAN id (${VLAN_ID_MIN}..${VLAN_ID_MAX})`);
      if (new Set(mode.vlans).size !== mode.vlans.length) bad('a trunk lists each VLAN once');
      if (mode.pvid !== undefined && !isVid(mode.pvid)) bad(`pvid ${mode.pvid} is not a VLAN id (${VLAN_ID_MIN}..${VLAN_ID_MAX})`);
      const vlans = Object.freeze([...mode.vlans]);
      return Object.freeze(mode.pvid === undefined ? { kind: 'trunk', vlans } : { kind: 'trunk', vlans, pvid: mode.pvid });
    }
    default:
      return bad("kind must be 'transparent', 'access' or 'trunk'");
  }
}

// ---------------------------------------------------------------- allow-file options

const OPTIONS_HINT = 'expected vlan=N, trunk=N,M or pvid=P';
const BOTH_HINT = 'a port is an access port (vlan=N) or a trunk (trunk=N,M [pvid=P]), not both';

/**
 * The VLAN mode given by an allow-file line's options: `vlan=N` (an access
 * port), `trunk=N,M,...` with an optional `pvid=P` (a trunk; untagged frames
 * belong to P), none (transparent). Errors are EtherlinkError
 * 'ERR_INVALID_ALLOW_LIST' with a message that starts with `${where}: `, names
 * the bad option and says what would be right.
 */
export function parseVlanOptions(fields: readonly string[], where: string): VlanMode {
  const fail = (msg: string): never => {
    throw new EtherlinkError('ERR_INVALID_ALLOW_LIST', `${where}: ${msg}`);
  };
  const vid = (field: string, text: string): number => {
    const n = /^[0-9]{1,4}$/.test(text) ? Number(text) : NaN;
    if (!isVid(n)) fail(`${field}: a VLAN id is ${VLAN_ID_MIN}..${VLAN_ID_MAX}`);
    return n;
  };
  const seen = new Map<string, string>();
  for (const field of fields) {
    const eq = field.indexOf('=');
    const key = field.slice(0, eq);
    if (eq < 0 || (key !== 'vlan' && key !== 'trunk' && key !== 'pvid')) fail(`${field}: ${OPTIONS_HINT}`);
    const previous = seen.get(key);
    if (previous !== undefined) fail(`${previous} and ${field}: give ${key}= once`);
    seen.set(key, field);
  }
  const vlanField = seen.get('vlan');
  const trunkField = seen.get('trunk');
  const pvidField = seen.get('pvid');
  if (vlanField !== undefined && trunkField !== undefined) fail(`vlan= and trunk= together: ${BOTH_HINT}`);
  if (pvidField !== undefined && trunkField === undefined) {
    fail(`${pvidField}: pvid= needs trunk= (pvid=P is the VLAN of a trunk's untagged frames: trunk=N,M pvid=P; an access port is vlan=N)`);
  }
  if (vlanField !== undefined) return Object.freeze({ kind: 'access', vlan: vid(vlanField, vlanField.slice('vlan='.length)) });
  if (trunkField === undefined) return TRANSPARENT;
  const list = trunkField.slice('trunk='.length);
  const vlans: number[] = [];
  for (const item of list.split(',')) {
    const v = /^[0-9]{1,4}$/.test(item) ? Number(item) : NaN;
    if (item === '') fail(`${trunkField}: expected VLAN ids separated by commas, like trunk=10,20`);
    if (!isVid(v)) fail(`${trunkField}: ${item} is not a VLAN id; a VLAN id is ${VLAN_ID_MIN}..${VLAN_ID_MAX}`);
    if (vlans.includes(v)) fail(`${trunkField}: VLAN ${v} is listed twice; list each VLAN once`);
    vlans.push(v);
  }
  const frozen = Object.freeze(vlans);
  if (pvidField === undefined) return Object.freeze({ kind: 'trunk', vlans: frozen });
  return Object.freeze({ kind: 'trunk', vlans: frozen, pvid: vid(pvidField, pvidField.slice('pvid='.length)) });
}
