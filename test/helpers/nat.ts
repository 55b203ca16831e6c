// The NAT lab: an "internet" (a Linux bridge) with the switch on it, routers
// doing nftables masquerade in front of LANs of hosts, and what the NAT tests
// measure and break with: mapping checks, UDP blocks between routers, a router
// that restarts on another port range, port forwards, an attacker's address,
// captures and raw UDP senders, link counters, TCP streams that time their own
// stalls, and vswitch/vport started behind the NATs with their status read as
// JSON. Never sends beyond this machine.
//
//   sw ──eth0 198.51.100.1 (the switch's underlay: its counters are the test's)
//    │
//   internet: bridge br0, reflectors on 198.51.100.2:3478 and .3:3479,
//    │        an attacker's address 198.51.100.66
//    │                          │
//   r1 wan 198.51.100.11      r2 wan 198.51.100.12      (masquerade [random])
//   r1 lan 10.1.0.1/24        r2 lan 10.2.0.1/24        (a bridge)
//    │     │                   │
//   h1 10.1.0.2  h2 10.1.0.3   h3 10.2.0.2 ...           (default route via .1)
//
// Hosts are numbered across routers from 1 in the order given; host i runs
// vport hI with overlay address 10.99.0.i and the test keys of host i.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { collect, ensureTools, Netns, run, waitExit, waitFor, waitForOutput } from './netns.js';
import { bin, execIn, MAX_LAN_HOSTS, portKeyArgs, START_TIMEOUT_MS, switchKeyArgs, SWITCH_PORT } from './lan.js';
import type { PortStatusReport, SwitchStatusReport } from '../../lib/daemon/status.js';

/** The switch's public address, on `eth0` in the lab's `sw` namespace. */
export const SWITCH_ADDRESS = '198.51.100.1';
/** The switch's underlay interface (in `lab.sw`). */
export const SWITCH_IF = 'eth0';
/** Where checkMapping's two UDP reflectors listen (in the internet namespace, on its bridge). */
export const REFLECTORS: readonly { address: string; port: number }[] = [
  { address: '198.51.100.2', port: 3478 },
  { address: '198.51.100.3', port: 3479 },
];
/**
 * An address of the internet's own (on its bridge) that belongs to no router
 * and no switch: where the security tests' attacker sends from.
 */
export const ATTACKER_ADDRESS = '198.51.100.66';
/** Router k's public (WAN) address. */
export const wanAddress = (k: number): string => `198.51.100.${10 + k}`;
/** Host j (from 1) on router k's LAN; the router is .1. */
export const lanAddress = (k: number, j: number): string => `10.${k}.0.${j + 1}`;
/** Host i's overlay address (its TAP etl0). */
export const overlayAddress = (i: number): string => `10.99.0.${i}`;

/** How long a lab command may take on a busy 2-core VM. */
const CMD_TIMEOUT_MS = 10_000;
/** How long checkMapping and punch wait for answers. */
const PROBE_TIMEOUT_MS = 3_000;

/**
 * 'masquerade' keeps the source port when it is free, so one socket shows the
 * same public port to every destination (endpoint-independent mapping in
 * practice); 'masquerade random' picks a port per connection, so it differs per
 * destination (endpoint-dependent, "symmetric"). Either way the router drops
 * unsolicited inbound (address-and-port-dependent filtering, as Linux conntrack
 * and most home routers do).
 */
export type NatMode = 'masquerade' | 'masquerade random';

export interface RouterSpec {
  mode?: NatMode;
  /** Hosts on this router's LAN (default 1). */
  hosts?: number;
  /** nf_conntrack_udp_timeout and ..._stream in this router's namespace, in seconds (default: the kernel's, 30/120). */
  udpTimeoutS?: number;
  /**
   * What the router does with unsolicited packets to its WAN address: 'drop'
   * (default, as home routers do) or 'accept' (handed to its own stack, which
   * answers port unreachable). With 'accept' the early packet of a hole punch is
   * confirmed in conntrack and takes the tuple, so this router's own outbound
   * flow to that peer is put on another port and the punch fails (measured:
   * 42000 -> 62744) until the entry expires.
   */
  wanInput?: 'drop' | 'accept';
}

export interface NatHost {
  ns: Netns;
  router: NatRouter;
  /** Number across the lab (from 1): keys, port name hI, overlay 10.99.0.I. */
  index: number;
  /** vport name, `h${index}`. */
  name: string;
  /** Address on its LAN (on `eth0`). */
  lan: string;
  /** Its overlay address, 10.99.0.index. */
  overlay: string;
}

export interface NatRouter {
  ns: Netns;
  /** From 1. */
  index: number;
  name: string;
  mode: NatMode;
  /** Public address on `wan`. */
  wan: string;
  /** Its LAN, 10.k.0.0/24, with the router on 10.k.0.1 (`lan`, a bridge). */
  lanPrefix: string;
  wanInput: 'drop' | 'accept';
  hosts: NatHost[];
  udpTimeoutS?: number;
  /** The public ports its masquerade maps to since remap() (else: the source port when free). */
  portRange?: PortRange;
}

/** UDP ports from..to, inclusive. */
export interface PortRange {
  from: number;
  to: number;
}

export interface LinkCounters {
  rxPackets: number;
  txPackets: number;
  rxBytes: number;
  txBytes: number;
}

export type Mapping = 'endpoint-independent' | 'endpoint-dependent';

export interface MappingReport {
  mapping: Mapping;
  /** The host socket's local port. */
  localPort: number;
  /** What each reflector saw as the source: reflector ip:port -> public ip:port. */
  observed: Record<string, string>;
}

export interface NatLab {
  tag: string;
  internet: Netns;
  sw: Netns;
  switchAddress: string;
  routers: NatRouter[];
  /** Every host, by index - 1. */
  hosts: NatHost[];
  /** Drop UDP between two routers' public addresses, both directions (in the internet's bridge); the switch stays reachable. */
  block(a: NatRouter, b: NatRouter): void;
  unblock(a: NatRouter, b: NatRouter): void;
  /** Packets the blocks dropped so far. */
  blockedDrops(): number;
  /**
   * The router restarts its NAT on another port range, as a home router that
   * rebooted: its masquerade now maps to `ports` (still endpoint-independent:
   * a socket keeps one public port for every destination, as long as its own
   * port is outside the range) and its conntrack table is flushed, so every
   * socket behind it appears from a new public port at its next datagram.
   * Returns how many UDP flows it had.
   */
  remap(router: NatRouter, ports: PortRange): number;
  /**
   * A port forward, as users set one up for a VPN: UDP to the router's public
   * address on `port` goes to `host` on the same port, from anyone (new flows;
   * established ones keep their NAT).
   */
  forward(router: NatRouter, host: NatHost, port: number): void;
  /** Measure `router`'s mapping from one socket on `host` (default its first) to both reflectors. */
  checkMapping(router: NatRouter, host?: NatHost): Promise<MappingReport>;
  /**
   * The host's router drops every UDP packet from it (a firewall that blocks
   * UDP: hotel Wi-Fi, a corporate network); TCP and ICMP still pass. With
   * `tcpToSwitch`, TCP from it to the switch is dropped too (only a proxy gets
   * out); with `{ except: [443] }`, all of it but to those ports (only HTTPS).
   */
  blockUdp(host: NatHost, opts?: { tcpToSwitch?: boolean | { except: readonly number[] } }): void;
  unblockUdp(host: NatHost): void;
  /** Packets from `host` those rules dropped so far. */
  udpBlockedDrops(host: NatHost): number;
  /** Counters of the switch's underlay interface. */
  switchCounters(): LinkCounters;
  /** The router's conntrack UDP entries as text, for failure reports. */
  conntrack(router: NatRouter): string;
  /** The router's conntrack UDP entries, parsed. */
  conntrackEntries(router: NatRouter): ConntrackEntry[];
  /** End the lab's own helpers (the reflectors) and delete its namespaces; end its daemons first (NatDaemon.stop). */
  destroy(): void;
}

export interface ConntrackTuple {
  src: string;
  dst: string;
  sport: number;
  dport: number;
}

/** One UDP flow in a router's conntrack table (/proc/net/nf_conntrack). */
export interface ConntrackEntry {
  /** Seconds left before it expires. */
  timeoutS: number;
  original: ConntrackTuple;
  reply: ConntrackTuple;
  assured: boolean;
}

function parseConntrack(line: string): ConntrackEntry | undefined {
  const timeout = /\budp\s+17\s+(\d+)\s/.exec(line);
  const tuples = [...line.matchAll(/src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+)/g)].map((m) => ({ src: m[1]!, dst: m[2]!, sport: Number(m[3]), dport: Number(m[4]) }));
  if (timeout === null || tuples.length < 2) return undefined;
  return { timeoutS: Number(timeout[1]), original: tuples[0]!, reply: tuples[1]!, assured: line.includes('[ASSURED]') };
}

/** Run `ip -batch` in the root namespace or in `ns`: one process for many commands. */
function ipBatch(lines: readonly string[], ns?: Netns): void {
  if (lines.length === 0) return;
  run('ip', [...(ns ? ['-n', ns.name] : []), '-batch', '-'], { input: lines.join('\n') + '\n', timeoutMs: CMD_TIMEOUT_MS });
}

function sysctl(ns: Netns, settings: Record<string, string | number>): void {
  ns.exec('sysctl', ['-q', '-w', ...Object.entries(settings).map(([k, v]) => `${k}=${v}`)], { timeoutMs: CMD_TIMEOUT_MS });
}

function readSysctl(ns: Netns, key: string): string {
  return ns.exec('sysctl', ['-n', key], { timeoutMs: CMD_TIMEOUT_MS }).stdout.trim();
}

function nft(ns: Netns, script: string): void {
  run('ip', ['netns', 'exec', ns.name, 'nft', '-f', '-'], { input: script, timeoutMs: CMD_TIMEOUT_MS });
}

/** Bridged frames must not pass through ip/ip6/arp tables (br_netfilter is loaded on this machine, on in every namespace). */
const BRIDGE_NF_OFF = {
  'net.bridge.bridge-nf-call-iptables': 0,
  'net.bridge.bridge-nf-call-ip6tables': 0,
  'net.bridge.bridge-nf-call-arptables': 0,
};

/**
 * The underlay is IPv4 only: no link-local candidates, no router solicitations
 * on the switch's counters. Per interface: `all` would take IPv6 from the TAPs
 * made later too.
 */
const v6Off = (...ifnames: string[]): Record<string, number> => Object.fromEntries(ifnames.map((i) => [`net.ipv6.conf.${i}.disable_ipv6`, 1]));

/**
 * Unsolicited inbound is dropped in input, not just left unanswered: a dropped
 * packet's conntrack entry is never confirmed, so a hole-punching packet that
 * arrives before the router's own outbound one cannot take the tuple and push
 * that outbound flow onto another port.
 */
function routerRules(mode: NatMode, wanInput: 'drop' | 'accept'): string {
  return `
table ip etl_nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" ${mode}
  }
}
table inet etl_filter {
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "wan" ct state established,related accept
    iifname "wan" icmp type echo-request accept
    iifname "wan" ${wanInput}
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "lan" oifname "wan" accept
  }
}
`;
}

/** The masquerade statement of `mode`, mapping to `ports` (nft: `masquerade to :20000-30000 random`). */
function masquerade(mode: NatMode, ports: PortRange): string {
  return mode.replace('masquerade', `masquerade to :${ports.from}-${ports.to}`);
}

/**
 * UDP to the WAN on `port` goes to the host (a new flow is DNATed in
 * prerouting, and let through the forward chain, whose policy drops); what
 * the host sends back leaves through the masquerade as before.
 */
function forwardRules(host: NatHost, port: number): string {
  return `
table ip etl_forward {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "wan" udp dport ${port} dnat to ${host.lan}:${port}
  }
}
add rule inet etl_filter forward iifname "wan" oifname "lan" ct status dnat accept
`;
}

/** Drops UDP between the address pairs in the set, in the internet's bridge (bridged frames, so the bridge family). */
const BLOCK_RULES = `
table bridge etl_block {
  set pairs {
    type ipv4_addr . ipv4_addr
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    ip protocol udp ip saddr . ip daddr @pairs counter drop
  }
}
`;

/** Build the lab (synchronously, well under a second or two); cleanup() removes all of it. */
export function buildNatLab(tag: string, specs: readonly RouterSpec[]): NatLab {
  ensureTools({ nft: 'nftables', ping: 'iputils-ping', sysctl: 'procps', conntrack: 'conntrack', tcpdump: 'tcpdump' });
  const totalHosts = specs.reduce((n, s) => n + (s.hosts ?? 1), 0);
  if (totalHosts > MAX_LAN_HOSTS) throw new Error(`a NAT lab has at most ${MAX_LAN_HOSTS} hosts (the test keys), asked for ${totalHosts}`);
  if (specs.length > 50) throw new Error('at most 50 routers');

  const internet = Netns.create('inet', tag);
  const sw = Netns.create('sw', tag);
  const routers: NatRouter[] = [];
  const hosts: NatHost[] = [];
  const rootLines: string[] = [];
  for (const [ki, spec] of specs.entries()) {
    const k = ki + 1;
    const router: NatRouter = {
      ns: Netns.create(`r${k}`, tag),
      index: k,
      name: `r${k}`,
      mode: spec.mode ?? 'masquerade',
      wan: wanAddress(k),
      lanPrefix: `10.${k}.0.0/24`,
      wanInput: spec.wanInput ?? 'drop',
      hosts: [],
      ...(spec.udpTimeoutS !== undefined ? { udpTimeoutS: spec.udpTimeoutS } : {}),
    };
    routers.push(router);
    rootLines.push(`link add wan netns ${router.ns.name} type veth peer name r${k} netns ${internet.name}`);
    for (let j = 1; j <= (spec.hosts ?? 1); j++) {
      const index = hosts.length + 1;
      const host: NatHost = { ns: Netns.create(`h${index}`, tag), router, index, name: `h${index}`, lan: lanAddress(k, j), overlay: overlayAddress(index) };
      router.hosts.push(host);
      hosts.push(host);
      rootLines.push(`link add eth0 netns ${host.ns.name} type veth peer name h${j} netns ${router.ns.name}`);
    }
  }
  rootLines.push(`link add ${SWITCH_IF} netns ${sw.name} type veth peer name sw netns ${internet.name}`);
  ipBatch(rootLines);

  // The internet: one bridge, no routes anywhere else, addresses only for the reflectors.
  ipBatch([
    'link add br0 type bridge',
    'link set br0 up',
    ...[...REFLECTORS.map((r) => r.address), ATTACKER_ADDRESS].map((a) => `addr add ${a}/24 dev br0`),
    'link set sw master br0',
    'link set sw up',
    ...routers.flatMap((r) => [`link set r${r.index} master br0`, `link set r${r.index} up`]),
  ], internet);
  sysctl(internet, { ...BRIDGE_NF_OFF, ...v6Off('br0', 'sw', ...routers.map((r) => `r${r.index}`)) });
  nft(internet, BLOCK_RULES);

  ipBatch([`addr add ${SWITCH_ADDRESS}/24 dev ${SWITCH_IF}`, `link set ${SWITCH_IF} up`], sw);
  sysctl(sw, v6Off(SWITCH_IF));

  for (const r of routers) {
    ipBatch([
      `addr add ${r.wan}/24 dev wan`,
      'link set wan up',
      'link add lan type bridge',
      `addr add 10.${r.index}.0.1/24 dev lan`,
      'link set lan up',
      ...r.hosts.flatMap((_, j) => [`link set h${j + 1} master lan`, `link set h${j + 1} up`]),
    ], r.ns);
    nft(r.ns, routerRules(r.mode, r.wanInput));
    sysctl(r.ns, { 'net.ipv4.ip_forward': 1, ...BRIDGE_NF_OFF, ...v6Off('wan', 'lan', ...r.hosts.map((_, j) => `h${j + 1}`)) });
    if (r.udpTimeoutS !== undefined) {
      const keys = ['net.netfilter.nf_conntrack_udp_timeout', 'net.netfilter.nf_conntrack_udp_timeout_stream'];
      sysctl(r.ns, Object.fromEntries(keys.map((key) => [key, r.udpTimeoutS!])));
      for (const key of keys) {
        const got = readSysctl(r.ns, key);
        if (got !== String(r.udpTimeoutS)) throw new Error(`${key} in ${r.ns.name} reads ${got} after setting ${r.udpTimeoutS}`);
      }
    }
    for (const h of r.hosts) {
      ipBatch([`addr add ${h.lan}/24 dev eth0`, 'link set eth0 up', `route add default via 10.${r.index}.0.1`], h.ns);
      sysctl(h.ns, v6Off('eth0'));
    }
  }

  const blocked = new Set<string>();
  const pairKey = (a: NatRouter, b: NatRouter): string => [a.wan, b.wan].sort().join(' ');
  const setElements = (a: NatRouter, b: NatRouter): string => `{ ${a.wan} . ${b.wan}, ${b.wan} . ${a.wan} }`;
  let reflector: Promise<ChildProcess> | undefined;

  const lab: NatLab = {
    tag,
    internet,
    sw,
    switchAddress: SWITCH_ADDRESS,
    routers,
    hosts,
    block(a, b) {
      if (blocked.has(pairKey(a, b))) return;
      internet.exec('nft', ['add', 'element', 'bridge', 'etl_block', 'pairs', setElements(a, b)], { timeoutMs: CMD_TIMEOUT_MS });
      blocked.add(pairKey(a, b));
    },
    unblock(a, b) {
      if (!blocked.has(pairKey(a, b))) return;
      internet.exec('nft', ['delete', 'element', 'bridge', 'etl_block', 'pairs', setElements(a, b)], { timeoutMs: CMD_TIMEOUT_MS });
      blocked.delete(pairKey(a, b));
    },
    blockedDrops() {
      const out = internet.exec('nft', ['list', 'chain', 'bridge', 'etl_block', 'forward'], { timeoutMs: CMD_TIMEOUT_MS }).stdout;
      return Number(/counter packets (\d+)/.exec(out)?.[1] ?? NaN);
    },
    remap(router, ports) {
      // One nft transaction, then the flush: from here on every new flow takes a port in the range.
      nft(
        router.ns,
        [
          'flush chain ip etl_nat postrouting',
          // nft maps ports only after a match on a protocol that has them; the rest (ICMP) as before.
          `add rule ip etl_nat postrouting oifname "wan" meta l4proto { tcp, udp } ${masquerade(router.mode, ports)}`,
          `add rule ip etl_nat postrouting oifname "wan" ${router.mode}`,
        ].join('\n') + '\n',
      );
      router.portRange = ports;
      const flows = lab.conntrackEntries(router).length;
      router.ns.exec('conntrack', ['-F'], { timeoutMs: CMD_TIMEOUT_MS });
      return flows;
    },
    forward(router, host, port) {
      nft(router.ns, forwardRules(host, port));
    },
    blockUdp(host, opts = {}) {
      const toSwitch = `\n    iifname "lan" ip saddr ${host.lan} ip daddr ${SWITCH_ADDRESS}`;
      const tcpTo = opts.tcpToSwitch;
      const tcp =
        tcpTo === true
          ? `${toSwitch} meta l4proto tcp counter drop`
          : typeof tcpTo === 'object'
            ? `${toSwitch} tcp dport != { ${tcpTo.except.join(', ')} } counter drop`
            : '';
      nft(host.router.ns, `table inet etl_udp_${host.index}\ndelete table inet etl_udp_${host.index}\ntable inet etl_udp_${host.index} {\n  chain forward {\n    type filter hook forward priority -10; policy accept;\n    iifname "lan" ip saddr ${host.lan} meta l4proto udp counter drop${tcp}\n  }\n}\n`);
    },
    unblockUdp(host) {
      nft(host.router.ns, `table inet etl_udp_${host.index}\ndelete table inet etl_udp_${host.index}\n`);
    },
    udpBlockedDrops(host) {
      const r = host.router.ns.exec('nft', ['list', 'table', 'inet', `etl_udp_${host.index}`], { allowFail: true, timeoutMs: CMD_TIMEOUT_MS });
      return [...r.stdout.matchAll(/counter packets (\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
    },
    async checkMapping(router, host = router.hosts[0]) {
      if (host === undefined) throw new Error(`${router.name} has no hosts`);
      reflector ??= startReflector(internet);
      await reflector;
      const r = await execIn(host.ns, process.execPath, ['-e', MAPPING_PROBE, JSON.stringify({ targets: REFLECTORS, timeoutMs: PROBE_TIMEOUT_MS })], PROBE_TIMEOUT_MS + START_TIMEOUT_MS);
      const res = JSON.parse(r.out.trim().split('\n').pop() ?? '{}') as { localPort: number; observed: Record<string, string>; timeout?: boolean };
      if (r.status !== 0 || res.timeout) throw new Error(`mapping probe from ${host.name} behind ${router.name} got ${JSON.stringify(res.observed)} of ${REFLECTORS.length} reflectors (exit ${r.status}): ${r.err}`);
      const ports = new Set(Object.values(res.observed));
      return { mapping: ports.size === 1 ? 'endpoint-independent' : 'endpoint-dependent', localPort: res.localPort, observed: res.observed };
    },
    switchCounters: () => linkCounters(sw, SWITCH_IF),
    conntrack(router) {
      const r = router.ns.exec('cat', ['/proc/net/nf_conntrack'], { allowFail: true, timeoutMs: CMD_TIMEOUT_MS });
      return r.stdout
        .split('\n')
        .filter((l) => /\budp\b/.test(l))
        .map((l) => l.replace(/\s+/g, ' ').trim())
        .join('\n');
    },
    destroy() {
      void reflector?.then((c) => c.kill('SIGKILL'), () => {});
      for (const ns of [...hosts.map((h) => h.ns), ...routers.map((r) => r.ns), sw, internet]) ns.delete();
    },
    conntrackEntries(router) {
      return lab
        .conntrack(router)
        .split('\n')
        .map(parseConntrack)
        .filter((e): e is ConntrackEntry => e !== undefined);
    },
  };
  return lab;
}

/** The counters of `ifname` in `ns` (`ip -s -j link show`). */
export function linkCounters(ns: Netns, ifname: string): LinkCounters {
  const [link] = JSON.parse(ns.ip('-s', '-j', 'link', 'show', ifname).stdout) as { stats64: { rx: { packets: number; bytes: number }; tx: { packets: number; bytes: number } } }[];
  if (link === undefined) throw new Error(`no link ${ifname} in ${ns.name}`);
  return { rxPackets: link.stats64.rx.packets, txPackets: link.stats64.tx.packets, rxBytes: link.stats64.rx.bytes, txBytes: link.stats64.tx.bytes };
}

/** later - earlier, field by field. */
export function counterDelta(later: LinkCounters, earlier: LinkCounters): LinkCounters {
  return {
    rxPackets: later.rxPackets - earlier.rxPackets,
    txPackets: later.txPackets - earlier.txPackets,
    rxBytes: later.rxBytes - earlier.rxBytes,
    txBytes: later.txBytes - earlier.txBytes,
  };
}

/** Replies to every datagram with the source ip:port it saw, on each of the given addresses. */
const REFLECTOR = `
const dgram = require('node:dgram');
const targets = JSON.parse(process.argv[1]);
let ready = 0;
for (const t of targets) {
  const s = dgram.createSocket('udp4');
  s.on('message', (_m, r) => s.send(r.address + ':' + r.port, r.port, r.address));
  s.bind(t.port, t.address, () => { if (++ready === targets.length) console.log('reflector ready'); });
}
`;

/** One socket, a datagram to each reflector (resent until answered): what each saw. */
const MAPPING_PROBE = `
const { targets, timeoutMs } = JSON.parse(process.argv[1]);
const s = require('node:dgram').createSocket('udp4');
const observed = {};
const key = (a, p) => a + ':' + p;
const done = (timeout) => { console.log(JSON.stringify({ localPort: s.address().port, observed, timeout })); process.exit(timeout ? 1 : 0); };
s.on('message', (m, r) => { observed[key(r.address, r.port)] = m.toString(); if (Object.keys(observed).length === targets.length) done(false); });
s.bind(0, () => {
  const send = () => { for (const t of targets) if (!(key(t.address, t.port) in observed)) s.send('mapping?', t.port, t.address); };
  send();
  setInterval(send, 200);
  setTimeout(() => done(true), timeoutMs);
});
`;

async function startReflector(internet: Netns): Promise<ChildProcess> {
  const child = internet.spawn(process.execPath, ['-e', REFLECTOR, JSON.stringify(REFLECTORS)]);
  await waitForOutput(child, /reflector ready\n/, START_TIMEOUT_MS);
  return child;
}

/** Both ends send to the other's public address on the same port until each heard the other once (or time runs out). */
const PUNCH = `
const { port, to, toPort, timeoutMs } = JSON.parse(process.argv[1]);
const s = require('node:dgram').createSocket('udp4');
let from;
let after = 0;
const done = () => { console.log(JSON.stringify({ got: from !== undefined, from })); process.exit(0); };
s.on('message', (_m, r) => { from ??= r.address + ':' + r.port; });
s.bind(port, () => {
  setInterval(() => { s.send('punch', toPort, to); if (from !== undefined && ++after >= 5) done(); }, 50);
  setTimeout(done, timeoutMs);
});
`;

export interface PunchResult {
  /** The UDP port both ends sent from and to. */
  port: number;
  /** What a heard from b (b's public ip:port as a saw it), if anything. */
  aFrom?: string;
  bFrom?: string;
}

let punchPort = 41_000;

/**
 * A UDP hole punch between hosts behind two routers, each end sending from one
 * port (the same on both) to the other router's public address on that port:
 * through endpoint-independent NATs both hear each other, unless blocked.
 */
export async function punch(a: NatHost, b: NatHost, timeoutMs = PROBE_TIMEOUT_MS): Promise<PunchResult> {
  const port = punchPort++;
  const one = async (from: NatHost, to: NatHost): Promise<string | undefined> => {
    const r = await execIn(from.ns, process.execPath, ['-e', PUNCH, JSON.stringify({ port, to: to.router.wan, toPort: port, timeoutMs })], timeoutMs + START_TIMEOUT_MS);
    const res = JSON.parse(r.out.trim().split('\n').pop() || '{}') as { got?: boolean; from?: string };
    if (r.status !== 0) throw new Error(`punch from ${from.name} exited ${r.status}: ${r.err}`);
    return res.from;
  };
  const [aFrom, bFrom] = await Promise.all([one(a, b), one(b, a)]);
  return { port, ...(aFrom !== undefined ? { aFrom } : {}), ...(bFrom !== undefined ? { bFrom } : {}) };
}

// ---------------------------------------------------------------------------
// Raw UDP: what a misbehaving party on the internet sends, and what an
// observer there captures. Every sender sends a bounded list and stops.

let scratch: string | undefined;
let scratchSeq = 0;

/** This process's directory for control sockets, captures and datagram lists; removed at exit. */
function scratchDir(): string {
  if (scratch === undefined) {
    const dir = mkdtempSync(join(tmpdir(), 'etl-nat-'));
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
    scratch = dir;
  }
  return scratch;
}

const scratchFile = (name: string): string => join(scratchDir(), `${++scratchSeq}-${name}`);

/**
 * Send the datagrams in a file (JSON: hex strings) from one socket bound to
 * `bind`, `burst` at a time with `gapMs` between bursts, then listen `listenMs`
 * more; print what came back to that socket.
 */
const UDP_SENDER = `
const { file, bind, to, port, burst, gapMs, listenMs } = JSON.parse(process.argv[1]);
const datagrams = JSON.parse(require('node:fs').readFileSync(file, 'utf8')).map((h) => Buffer.from(h, 'hex'));
const s = require('node:dgram').createSocket('udp4');
const replies = [];
let sent = 0, errors = 0;
s.on('message', (m, r) => replies.push({ from: r.address + ':' + r.port, hex: m.toString('hex'), at: Date.now() }));
s.on('error', (e) => { console.error(e.message); process.exit(1); });
const sendOne = (d) => new Promise((resolve) => s.send(d, port, to, (err) => { if (err) errors++; else sent++; resolve(); }));
s.bind(0, bind, async () => {
  const startedAt = Date.now();
  for (let i = 0; i < datagrams.length; i++) {
    await sendOne(datagrams[i]);
    if ((i + 1) % burst === 0) await new Promise((r) => setTimeout(r, gapMs));
  }
  const sentAt = Date.now();
  setTimeout(() => { console.log(JSON.stringify({ local: s.address().address + ':' + s.address().port, sent, errors, startedAt, sentAt, replies })); process.exit(0); }, listenMs);
});
`;

export interface UdpSendResult {
  /** The sending socket's ip:port. */
  local: string;
  sent: number;
  errors: number;
  startedAt: number;
  sentAt: number;
  /** Every datagram that came back to the sending socket. */
  replies: { from: string; data: Buffer; at: number }[];
}

/**
 * Send `datagrams` from one UDP socket in `ns` (bound to `opts.bind`, default
 * any address) to `to`:`port`, paced, and collect what comes back to that
 * socket until `listenMs` after the last one.
 */
export async function sendUdp(ns: Netns, to: string, port: number, datagrams: readonly Buffer[], opts: { bind?: string; burst?: number; gapMs?: number; listenMs?: number } = {}): Promise<UdpSendResult> {
  const file = scratchFile('datagrams.json');
  writeFileSync(file, JSON.stringify(datagrams.map((d) => d.toString('hex'))));
  const args = { file, bind: opts.bind ?? '0.0.0.0', to, port, burst: opts.burst ?? 20, gapMs: opts.gapMs ?? 10, listenMs: opts.listenMs ?? 500 };
  const budgetMs = START_TIMEOUT_MS + args.listenMs + Math.ceil(datagrams.length / args.burst) * (args.gapMs + 5);
  const r = await execIn(ns, process.execPath, ['-e', UDP_SENDER, JSON.stringify(args)], budgetMs);
  if (r.status !== 0) throw new Error(`UDP sender in ${ns.name} to ${to}:${port} exited ${r.status}: ${r.err.trim()}`);
  const res = JSON.parse(r.out.trim().split('\n').pop() ?? '{}') as Omit<UdpSendResult, 'replies'> & { replies: { from: string; hex: string; at: number }[] };
  return { ...res, replies: res.replies.map((x) => ({ from: x.from, data: Buffer.from(x.hex, 'hex'), at: x.at })) };
}

/** One UDP datagram of a capture. */
export interface CapturedDatagram {
  /** Capture time, ms since the epoch. */
  at: number;
  src: string;
  sport: number;
  dst: string;
  dport: number;
  payload: Buffer;
}

export interface UdpCapture {
  /** Stop tcpdump and read what it wrote: the IPv4 UDP datagrams, in order. */
  stop(): Promise<CapturedDatagram[]>;
}

/** tcpdump -w on `ifname` in `ns` with a capture `filter` (tcpdump's words); resolves once it captures. */
export async function startUdpCapture(ns: Netns, ifname: string, filter: readonly string[]): Promise<UdpCapture> {
  const file = scratchFile(`${ifname}.pcap`);
  // -Z root: tcpdump opens the file after dropping to its own user, which may not write here.
  const child = ns.spawn('tcpdump', ['-i', ifname, '-nn', '-U', '-s', '0', '-B', '4096', '-Z', 'root', '-w', file, ...filter]);
  await waitForOutput(child, new RegExp(`listening on ${ifname}`), START_TIMEOUT_MS);
  return {
    async stop() {
      child.kill('SIGINT');
      await waitExit(child, 5_000);
      return readPcapUdp(readFileSync(file));
    },
  };
}

/** The IPv4 UDP datagrams of a classic pcap file of Ethernet frames (what tcpdump -w writes on a veth). */
export function readPcapUdp(buf: Buffer): CapturedDatagram[] {
  if (buf.length < 24) return [];
  const magic = buf.readUInt32LE(0);
  const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  if (!le && buf.readUInt32BE(0) !== 0xa1b2c3d4 && buf.readUInt32BE(0) !== 0xa1b23c4d) throw new Error(`not a pcap file (magic ${magic.toString(16)})`);
  const nanos = (le ? magic : buf.readUInt32BE(0)) === 0xa1b23c4d;
  const u32 = (at: number): number => (le ? buf.readUInt32LE(at) : buf.readUInt32BE(at));
  const linkType = u32(20);
  if (linkType !== 1) throw new Error(`pcap link type ${linkType}, not Ethernet`);
  const out: CapturedDatagram[] = [];
  for (let at = 24; at + 16 <= buf.length; ) {
    const sec = u32(at);
    const frac = u32(at + 4);
    const caplen = u32(at + 8);
    const frame = buf.subarray(at + 16, at + 16 + caplen);
    at += 16 + caplen;
    if (frame.length < 14 + 20 + 8 || frame.readUInt16BE(12) !== 0x0800) continue;
    const ip = 14;
    const ihl = (frame[ip]! & 0x0f) * 4;
    if (frame[ip + 9] !== 17) continue;
    const udp = ip + ihl;
    const udpLen = frame.readUInt16BE(udp + 4);
    const ipText = (o: number): string => `${frame[o]}.${frame[o + 1]}.${frame[o + 2]}.${frame[o + 3]}`;
    out.push({
      at: sec * 1000 + (nanos ? frac / 1e6 : frac / 1e3),
      src: ipText(ip + 12),
      dst: ipText(ip + 16),
      sport: frame.readUInt16BE(udp),
      dport: frame.readUInt16BE(udp + 2),
      payload: Buffer.from(frame.subarray(udp + 8, Math.min(frame.length, udp + udpLen))),
    });
  }
  return out;
}

// ---------------------------------------------------------------------------
// TCP streams that time themselves: a receiver that hashes what arrives and
// keeps the longest gap between arrivals, a sender of random bytes at an
// optional rate. No files: the hashes are computed on the fly.

/** Accept one connection; print "listening", then "progress BYTES" every 100 ms, then a JSON result line. */
const STREAM_RECEIVER = `
const { host, port, timeoutMs } = JSON.parse(process.argv[1]);
const hash = require('node:crypto').createHash('sha256');
const server = require('node:net').createServer((sock) => {
  server.close();
  let bytes = 0, first = 0, last = 0, maxGapMs = 0, maxGapAtBytes = 0;
  const progress = setInterval(() => console.log('progress ' + bytes), 100);
  sock.on('data', (d) => {
    const now = Date.now();
    if (first === 0) first = now;
    else if (now - last > maxGapMs) { maxGapMs = now - last; maxGapAtBytes = bytes; }
    last = now;
    bytes += d.length;
    hash.update(d);
  });
  sock.on('end', () => {
    clearInterval(progress);
    console.log(JSON.stringify({ bytes, sha256: hash.digest('hex'), seconds: (last - first) / 1000, maxGapMs, maxGapAtBytes, firstAt: first, lastAt: last }));
    process.exit(0);
  });
  sock.on('error', (e) => { console.error(e.message); process.exit(1); });
});
server.listen(port, host, () => console.log('listening'));
setTimeout(() => { console.error('receiver: no complete stream within ' + timeoutMs + ' ms'); process.exit(2); }, timeoutMs);
`;

/** Connect, send BYTES random bytes (at RATE bytes/s if set), print a JSON result line once the receiver closed. */
const STREAM_SENDER = `
const { host, port, bytes, rate, timeoutMs } = JSON.parse(process.argv[1]);
const crypto = require('node:crypto');
const hash = crypto.createHash('sha256');
const CHUNK = 64 * 1024;
const sock = require('node:net').connect({ host, port });
const started = Date.now();
let sent = 0;
sock.on('error', (e) => { console.error(e.message); process.exit(1); });
sock.resume();
const pump = () => {
  while (sent < bytes) {
    if (rate > 0) {
      const due = started + (sent / rate) * 1000;
      if (due > Date.now()) return void setTimeout(pump, Math.min(50, due - Date.now()));
    }
    const chunk = crypto.randomBytes(Math.min(CHUNK, bytes - sent));
    hash.update(chunk);
    sent += chunk.length;
    if (!sock.write(chunk)) return void sock.once('drain', pump);
  }
  sock.end();
};
sock.on('connect', pump);
sock.on('close', (hadError) => {
  console.log(JSON.stringify({ bytes: sent, sha256: hash.digest('hex'), seconds: (Date.now() - started) / 1000 }));
  process.exit(hadError || sent < bytes ? 1 : 0);
});
setTimeout(() => { console.error('sender: not done within ' + timeoutMs + ' ms, sent ' + sent); process.exit(2); }, timeoutMs);
`;

export interface StreamReceived {
  bytes: number;
  sha256: string;
  seconds: number;
  /** The longest time between two arrivals of data. */
  maxGapMs: number;
  /** How many bytes had arrived when that gap began. */
  maxGapAtBytes: number;
  firstAt: number;
  lastAt: number;
}

export interface StreamSent {
  bytes: number;
  sha256: string;
  seconds: number;
}

export interface Stream {
  receiver: ChildProcess;
  sender: ChildProcess;
  /** Bytes received so far (from the receiver's progress lines, at most 100 ms old). */
  received(): number;
  /** Both ends' results; rejects with their output when either fails. */
  done(): Promise<{ sent: StreamSent; received: StreamReceived }>;
}

/** A TCP stream of `bytes` random bytes from `from` to `to`'s overlay address, timed by the receiver. */
export async function startStream(from: NatHost, to: NatHost, opts: { bytes: number; rateBytesPerS?: number; port?: number; timeoutMs?: number }): Promise<Stream> {
  const port = opts.port ?? 5001;
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const receiver = to.ns.spawn(process.execPath, ['-e', STREAM_RECEIVER, JSON.stringify({ host: to.overlay, port, timeoutMs })]);
  await waitForOutput(receiver, /^listening$/m, START_TIMEOUT_MS);
  const sender = from.ns.spawn(process.execPath, ['-e', STREAM_SENDER, JSON.stringify({ host: to.overlay, port, bytes: opts.bytes, rate: opts.rateBytesPerS ?? 0, timeoutMs })]);
  const rx = collect(receiver);
  const tx = collect(sender);
  const lastJson = (s: string): string => s.trim().split('\n').filter((l) => l.startsWith('{')).pop() ?? 'null';
  return {
    receiver,
    sender,
    received: () => Number([...rx.out().matchAll(/^progress (\d+)$/gm)].pop()?.[1] ?? 0),
    async done() {
      const [txCode, rxCode] = await Promise.all([waitExit(sender, timeoutMs + 5_000), waitExit(receiver, timeoutMs + 5_000)]);
      const sent = JSON.parse(lastJson(tx.out())) as StreamSent | null;
      const received = JSON.parse(lastJson(rx.out())) as StreamReceived | null;
      if (txCode !== 0 || rxCode !== 0 || sent === null || received === null) {
        throw new Error(`stream ${from.name} -> ${to.name} failed: sender exit ${txCode} ${tx.out().slice(-300)}${tx.err()}; receiver exit ${rxCode} ${rx.out().slice(-300)}${rx.err()}`);
      }
      return { sent, received };
    },
  };
}

// ---------------------------------------------------------------------------
// vswitch and vport behind the NATs, and what they report.

/** What vport prints on stdout each time it joins. */
export const JOINED = /vport etl0 joined /;

/** A daemon started in a lab namespace: its process (replaced on restart), control socket and arguments. */
export class NatDaemon {
  private readonly earlier: string[] = [];
  private current: ChildProcess;

  constructor(
    readonly name: string,
    readonly ns: Netns,
    child: ChildProcess,
    readonly control: string,
    readonly args: readonly string[],
  ) {
    this.current = child;
  }

  get child(): ChildProcess {
    return this.current;
  }

  /** A new process for this daemon (a restart); the old one's output is kept. */
  replace(next: ChildProcess): void {
    this.earlier.push(this.outputOf(this.current), `--- ${this.name} restarted ---\n`);
    this.current = next;
  }

  /** SIGKILL this daemon's process (by its PID) and wait until it is gone. */
  async stop(): Promise<void> {
    const c = this.current;
    if (c.exitCode !== null || c.signalCode !== null) return;
    c.kill('SIGKILL');
    await waitExit(c, 5_000);
  }

  /** Everything every process of this daemon printed, restarts included. */
  output(): string {
    return this.earlier.join('') + this.outputOf(this.current);
  }

  private outputOf(c: ChildProcess): string {
    const o = collect(c);
    return o.out() + o.err();
  }
}

let controlSeq = 0;

function controlPath(prog: string): string {
  return join(scratchDir(), `${prog}-${++controlSeq}.sock`);
}

function argValue(args: readonly string[], flag: string): string | undefined {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
}

function spawnSwitch(lab: NatLab, args: readonly string[]): ChildProcess {
  return lab.sw.spawn(process.execPath, [bin('vswitch'), String(SWITCH_PORT), ...switchKeyArgs(args), ...args]);
}

const SWITCH_READY = new RegExp(`vswitch ready on UDP ${SWITCH_PORT}\\n`);

/** Start vswitch in the lab's `sw` namespace (test keys, a fresh control socket unless `args` name them). */
export async function startNatSwitch(lab: NatLab, args: readonly string[] = []): Promise<NatDaemon> {
  const all = argValue(args, '--control') === undefined ? [...args, '--control', controlPath('vswitch')] : [...args];
  const child = spawnSwitch(lab, all);
  await waitForOutput(child, SWITCH_READY, START_TIMEOUT_MS);
  return new NatDaemon('vswitch', lab.sw, child, argValue(all, '--control')!, all);
}

/** Start the switch again with the same arguments (keys, control socket) after its process ended. */
export async function restartNatSwitch(lab: NatLab, sw: NatDaemon): Promise<void> {
  if (sw.child.exitCode === null && sw.child.signalCode === null) throw new Error('restartNatSwitch: the switch is still running');
  const child = spawnSwitch(lab, sw.args);
  sw.replace(child);
  await waitForOutput(child, SWITCH_READY, START_TIMEOUT_MS);
}

/** Start vport hI (TAP etl0, 10.99.0.I/24) on `host`, joined to the lab's switch. */
export async function startNatPort(lab: NatLab, host: NatHost, args: readonly string[] = []): Promise<NatDaemon> {
  return startNatPortAt(lab, host, [lab.switchAddress, String(SWITCH_PORT)], args);
}

/** What vport hI on a NAT host is started with besides its arguments. */
export interface NatPortSpawnOptions {
  /** Added to this process's environment (HTTPS_PROXY, NO_PROXY...). */
  env?: NodeJS.ProcessEnv;
}

/**
 * Start vport hI as startNatPort does, but at `target` (HOST PORT, or a ws:// /
 * wss:// URL alone) instead of the lab's switch address and port; resolves once joined.
 */
export async function startNatPortAt(lab: NatLab, host: NatHost, target: readonly string[], args: readonly string[] = [], opts: NatPortSpawnOptions = {}): Promise<NatDaemon> {
  const port = spawnNatPort(host, target, args, opts);
  await waitForOutput(port.child, /vport etl0 joined \S+\n/, START_TIMEOUT_MS);
  return port;
}

/** Start vport hI at `target` without waiting for it to join (for a port that must not). */
export function spawnNatPort(host: NatHost, target: readonly string[], args: readonly string[] = [], opts: NatPortSpawnOptions = {}): NatDaemon {
  const all = argValue(args, '--control') === undefined ? [...args, '--control', controlPath('vport')] : [...args];
  const child = host.ns.spawn(
    process.execPath,
    [bin('vport'), ...target, '--name', 'etl0', '--ip', `${host.overlay}/24`, '--port-name', host.name, ...portKeyArgs(host.index, all), ...all],
    opts.env !== undefined ? { env: { ...process.env, ...opts.env } } : {},
  );
  return new NatDaemon(host.name, host.ns, child, argValue(all, '--control')!, all);
}

/** A peer as `vport status --json` reports it once direct paths exist. */
export interface NatPeerReport {
  id: number;
  name: string;
  state: 'up' | 'handshaking' | 'idle';
  path: 'direct' | 'relayed' | '-';
  /** The peer's ip:port, when direct. */
  endpoint?: string;
  /** Why relayed. */
  reason?: string;
  pathSince?: string;
  rttMs?: number;
  txFrames: number;
  rxFrames: number;
  txDirectBytes: number;
  rxDirectBytes: number;
  txRelayBytes: number;
  rxRelayBytes: number;
  /** Datagrams under this peer's session keys that did not authenticate. */
  authFailed: number;
  candidates: { address: string; kind: 'public' | 'local' | 'observed'; rttMs?: number; working: boolean }[];
}

export interface NatPortReport extends Omit<PortStatusReport, 'peers' | 'nat'> {
  peers: NatPeerReport[];
  /** This port's NAT mapping as measured against the switch. */
  nat?: 'endpoint-independent' | 'endpoint-dependent' | 'unknown' | 'none';
}

export interface NatSwitchReport extends Omit<SwitchStatusReport, 'pairs'> {
  pairs?: { a: string; b: string; path: 'direct' | 'relayed'; reason?: string }[];
}

async function statusJson(d: NatDaemon, prog: 'vport' | 'vswitch'): Promise<unknown> {
  const r = await execIn(d.ns, process.execPath, [bin(prog), 'status', '--control', d.control, '--json'], 10_000);
  if (r.status !== 0) throw new Error(`${prog} status of ${d.name} exited ${r.status}: ${r.err.trim()}`);
  return JSON.parse(r.out);
}

export const portReport = async (p: NatDaemon): Promise<NatPortReport> => (await statusJson(p, 'vport')) as NatPortReport;
export const switchReport = async (s: NatDaemon): Promise<NatSwitchReport> => (await statusJson(s, 'vswitch')) as NatSwitchReport;

/** `peer` in `port`'s status, or undefined. */
export async function peerReport(port: NatDaemon, peer: string): Promise<NatPeerReport | undefined> {
  return (await portReport(port)).peers.find((p) => p.name === peer);
}

/** The host part of "ip:port" (or "[v6]:port"). */
export function hostOf(endpoint: string | undefined): string | undefined {
  if (endpoint === undefined) return undefined;
  const m = /^\[(.*)\]:\d+$/.exec(endpoint) ?? /^(.*):\d+$/.exec(endpoint);
  return m?.[1];
}

/**
 * Wait until `port` reports `peer` on `path`, calling `kick` (traffic, e.g. one
 * ping) before each look so the session stays in use. Resolves with that report.
 */
export async function waitForPath(port: NatDaemon, peer: string, path: 'direct' | 'relayed', timeoutMs: number, kick?: () => Promise<unknown>, stepMs = 200): Promise<NatPeerReport> {
  let last: NatPeerReport | undefined;
  await waitFor(
    `${port.name} to report ${peer} on the ${path} path`,
    async () => {
      if (kick) await kick();
      last = await peerReport(port, peer);
      return last?.path === path && last.state === 'up';
    },
    timeoutMs,
    stepMs,
  ).catch((err: Error) => {
    throw new Error(`${err.message}; last seen: ${JSON.stringify(last)}`);
  });
  return last!;
}

/** One ping, answered within `waitS` seconds. */
export async function ping(from: NatHost, to: string, waitS = 1): Promise<boolean> {
  return (await execIn(from.ns, 'ping', ['-c', '1', '-W', String(waitS), to], (waitS + 4) * 1000)).status === 0;
}

/** Timestamps (ms) of the replies in `ping -D` output, with their icmp_seq. */
export function pingReplies(out: string): { at: number; seq: number }[] {
  return [...out.matchAll(/^\[(\d+\.\d+)\] .*icmp_seq=(\d+) .*time=/gm)].map((m) => ({ at: Number(m[1]) * 1000, seq: Number(m[2]) }));
}

/** The last `lines` lines of `text`. */
const tail = (text: string, lines: number): string => text.split('\n').slice(-lines).join('\n');

/** What a failing NAT test should show: every daemon's status JSON and log tail, each router's conntrack UDP entries, the block counter. */
export async function diagnose(lab: NatLab, daemons: readonly NatDaemon[]): Promise<string> {
  const parts: string[] = [];
  for (const d of daemons) {
    const prog = d.name === 'vswitch' ? 'vswitch' : 'vport';
    const status = await statusJson(d, prog).then(
      (j) =>
        prog === 'vport'
          ? JSON.stringify({ nat: (j as NatPortReport).nat, state: (j as NatPortReport).state, peers: (j as NatPortReport).peers }, null, 1)
          : `pairs ${JSON.stringify((j as NatSwitchReport).pairs)}\nprotocol ${JSON.stringify((j as NatSwitchReport).protocol)}`,
      (err: Error) => `(no status: ${err.message})`,
    );
    parts.push(`=== ${d.name} status\n${status}\n=== ${d.name} log (tail)\n${tail(d.output(), 40)}`);
  }
  for (const r of lab.routers) parts.push(`=== ${r.name} (${r.mode}${r.portRange ? ` to :${r.portRange.from}-${r.portRange.to}` : ''}) conntrack udp\n${lab.conntrack(r)}`);
  parts.push(`=== block drops: ${lab.blockedDrops()}`);
  return parts.join('\n');
}

/** Run `body`; when it throws, rethrow with diagnose() appended to the message. */
export async function withDiagnosis<T>(lab: NatLab, daemons: () => readonly NatDaemon[], body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    const report = await diagnose(lab, daemons()).catch((d: Error) => `(diagnosis failed: ${d.message})`);
    e.message = `${e.message}\n${report}`;
    throw e;
  }
}
