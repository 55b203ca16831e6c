// Status of a switch or a port: the reports the control socket serves (plain
// JSON data), and their human forms: aligned tables, no colours.
import type { NetworkStatus, PairPathStatus, SwitchServer, VxlanStatus } from './switch-server.js';
import type { PortClient, PortClientStatus } from './port-client.js';
import type { MacStatus, SwitchSnapshot, TrafficCounters } from '../switch/switch.js';
import type { UdpStats } from '../io/udp.js';
import type { LiveEvent } from './events.js';
import type { RelayWorkerStatus } from './relay-workers.js';

/** One switch port as `vswitch status` shows it: switch counters joined with the member's session. */
export interface SwitchPortReport {
  id: number;
  name: string;
  /** The network it is in, its VLAN mode ('transparent', 'access 10', 'trunk 10,20 pvid 1'), and why the loop guard blocks it, if it does. */
  network: string;
  vlan: string;
  blocked?: { reason: string; remainingS: number };
  /** Base64 static key (remote ports). */
  publicKey?: string;
  /** Underlay address, or 'local' for a port in the switch's own process. */
  address: string;
  joinedAt?: string;
  lastSeenS?: number;
  lastHandshakeS?: number;
  rekeys?: number;
  /** False while the port's device is down (its MACs are withdrawn, nothing floods to it). */
  linkUp: boolean;
  counters: TrafficCounters;
  macs: MacStatus[];
  /** Remote ports: the id end-to-end datagrams are routed by. */
  memberId?: number;
  /** Remote ports: end-to-end traffic relayed unopened, to and from it. */
  relayed?: { toFrames: number; toBytes: number; fromFrames: number; fromBytes: number };
  /** Remote ports: members holding its directory entry (itself included). */
  knownBy?: number;
  /** Remote ports: the names of the other members holding it. */
  knownByNames?: string[];
  /** Remote ports: their NAT mapping as they measured it, --no-direct or not, and their own addresses. */
  nat?: string;
  direct?: boolean;
  localAddresses?: string[];
  /** Remote ports: what they report they sent (tx) and received (rx) on direct paths, which the switch does not see. */
  directTraffic?: { txBytes: number; rxBytes: number };
  /** Remote ports: how they reach the switch now ('udp', 'tcp', 'ws'), or 'vxlan' for a remote VTEP. */
  transport?: 'udp' | 'tcp' | 'ws' | 'vxlan';
  /** A remote VTEP: the VNI it is heard on, and frames dropped as too large for the underlay once encapsulated. */
  vni?: number;
  txTooBig?: number;
}

/** What `vswitch status --json` prints: JSON-safe, self-contained. */
export interface SwitchStatusReport {
  kind: 'vswitch';
  /** When the report was taken (ISO 8601). */
  time: string;
  pid: number;
  mode: 'insecure' | 'secure';
  cipher: string;
  /** The switch's public key: what ports give as --switch-key. */
  publicKey: string;
  udpPorts: number[];
  /** TCP ports listened on, and the WebSocket listener's URL. */
  tcpPorts: number[];
  ws?: string;
  /** Stream connections: open, accepted, refused, timed out, malformed. */
  streams: Record<string, number>;
  /** The isolated networks: members, MACs, limits, counters of each. */
  networks: NetworkStatus[];
  ports: SwitchPortReport[];
  /** Pairs of members with an end-to-end session, and whether they reach each other direct or through this switch. */
  pairs: PairPathStatus[];
  /** The reflector's UDP port (0: none). */
  reflectorPort: number;
  macTable: (MacStatus & { network: string })[];
  macTableCounters: SwitchSnapshot['macTableCounters'];
  totals: TrafficCounters;
  protocol: Record<string, number>;
  udp: UdpStats[];
  /** The VXLAN VTEP (vswitch --vxlan): its port, source ports and drop counters. */
  vxlan?: VxlanStatus;
  /** Relay workers (vswitch --workers): each one's socket counters (relayDatagrams: what it relayed). */
  workers?: RelayWorkerStatus[];
  /** The running packet capture, or null. */
  capture?: unknown;
  /** The recent events, oldest first (joins, leaves, MAC moves and refused claims, rekeys, path changes, guards). */
  events?: LiveEvent[];
}

/** What `vport status --json` prints. */
export interface PortStatusReport extends PortClientStatus {
  kind: 'vport';
  time: string;
  pid: number;
  mac: string;
  capture?: unknown;
}

/** The report `vswitch status --json` prints, for a SwitchServer in this process. */
export function switchStatusReport(server: SwitchServer): SwitchStatusReport {
  const s = server.snapshot();
  const bySwitchPort = new Map(s.members.map((m) => [m.switchPort, m]));
  const vteps = new Map(s.vteps.map((v) => [v.switchPort, v]));
  const ports = s.ports.map((p): SwitchPortReport => {
    const m = bySwitchPort.get(p.id);
    const where = { network: p.network, vlan: p.vlan, ...(p.blocked !== undefined ? { blocked: p.blocked } : {}) };
    const v = vteps.get(p.id);
    if (v !== undefined) {
      return { id: p.id, name: p.name, ...where, address: v.address, ...(v.lastSeenS !== undefined ? { lastSeenS: v.lastSeenS } : {}), linkUp: p.linkUp, counters: p.counters, macs: p.macs, transport: 'vxlan', vni: v.vni, txTooBig: v.txTooBig };
    }
    if (m === undefined) return { id: p.id, name: p.name, ...where, address: 'local', linkUp: p.linkUp, counters: p.counters, macs: p.macs };
    return {
      id: p.id,
      name: p.name,
      ...where,
      publicKey: m.publicKey,
      address: m.address,
      joinedAt: m.joinedAt,
      lastSeenS: m.lastSeenS,
      lastHandshakeS: m.lastHandshakeS,
      rekeys: m.rekeys,
      linkUp: p.linkUp,
      counters: p.counters,
      macs: p.macs,
      memberId: m.memberId,
      relayed: m.relayed,
      knownBy: m.knownBy,
      knownByNames: m.knownByNames,
      nat: m.nat,
      direct: m.direct,
      localAddresses: m.localAddresses,
      transport: m.transport,
      ...(m.directTraffic !== undefined ? { directTraffic: m.directTraffic } : {}),
    };
  });
  return {
    kind: 'vswitch',
    time: new Date().toISOString(),
    pid: process.pid,
    mode: s.mode,
    cipher: s.cipher,
    publicKey: s.publicKey,
    udpPorts: server.ports,
    tcpPorts: s.tcpPorts,
    ...(s.ws !== undefined ? { ws: s.ws } : {}),
    streams: { ...s.streams },
    networks: s.networks,
    ports,
    pairs: s.pairs,
    reflectorPort: s.reflectorPort,
    macTable: s.macTable,
    macTableCounters: s.macTableCounters,
    totals: s.totals,
    protocol: { ...s.protocol },
    udp: s.udp,
    ...(s.vxlan !== undefined ? { vxlan: s.vxlan } : {}),
    ...(s.workers.length > 0 ? { workers: s.workers } : {}),
    capture: server.captureStatus(),
    events: server.events.list(),
  };
}

/**
 * The part of a switch report about one network (`vswitch status --network
 * NAME`): its ports, MACs, pairs and counters. Undefined when there is no
 * such network.
 */
export function networkReport(r: SwitchStatusReport, network: string): SwitchStatusReport | undefined {
  const net = r.networks.find((n) => n.name === network);
  if (net === undefined) return undefined;
  return {
    ...r,
    networks: [net],
    ports: r.ports.filter((p) => p.network === network),
    pairs: r.pairs.filter((x) => x.network === network),
    macTable: r.macTable.filter((m) => m.network === network),
    macTableCounters: net.macTableCounters,
    totals: net.totals,
  };
}

/** The report `vport status --json` prints, for a PortClient in this process. */
export function portStatusReport(client: PortClient): PortStatusReport {
  return { kind: 'vport', time: new Date().toISOString(), pid: process.pid, mac: client.tap.mac, ...client.status(), capture: client.captureStatus() };
}

function table(head: string[], rows: (string | number)[][]): string {
  const cells = [head, ...rows.map((r) => r.map(String))];
  const width = head.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map((r) => r.map((c, i) => c.padEnd(width[i]!)).join('  ').trimEnd()).join('\n');
}

function bytes(n: number): string {
  if (n < 1e3) return `${n} B`;
  if (n < 1e6) return `${(n / 1e3).toFixed(1)} kB`;
  if (n < 1e9) return `${(n / 1e6).toFixed(1)} MB`;
  return `${(n / 1e9).toFixed(2)} GB`;
}

/** The one-screen table SIGUSR1 prints: a row per port, then the MAC table and counters. */
export function formatSwitchTable(r: SwitchStatusReport): string {
  // A one-network switch of transparent ports shows no NETWORK or VLAN column.
  const multi = r.networks.length > 1;
  const vlans = r.ports.some((p) => p.vlan !== 'transparent' || p.blocked !== undefined);
  const ports = r.ports.map((p) => {
    const d = p.counters.drops;
    const drops = d.runt + d.oversize + d.badSource + d.samePort + d.reentrant + d.vlan + d.storm + d.blocked;
    const r = p.relayed;
    return [p.id, p.name, ...(multi ? [p.network] : []), ...(vlans ? [p.blocked !== undefined ? 'blocked' : p.vlan] : []), p.address, p.lastSeenS !== undefined ? `${p.lastSeenS}s` : '-', p.linkUp ? 'up' : 'down', p.counters.rxFrames, bytes(p.counters.rxBytes), p.counters.txFrames, bytes(p.counters.txBytes), drops, p.macs.length, r ? `${r.fromFrames}/${r.toFrames}` : '-'];
  });
  return [
    `PORTS (${r.ports.length})${r.mode === 'secure' ? '' : '  [insecure: plaintext]'}`,
    table(['ID', 'NAME', ...(multi ? ['NETWORK'] : []), ...(vlans ? ['VLAN'] : []), 'ADDRESS', 'SEEN', 'LINK', 'RX FRAMES', 'RX BYTES', 'TX FRAMES', 'TX BYTES', 'DROPS', 'MACS', 'RELAYED FROM/TO'], ports),
    '',
    ...macAndCounterLines(r),
  ].join('\n');
}

/** The MAC TABLE and COUNTERS sections, shared by the SIGUSR1 block and `vswitch status`. */
function macAndCounterLines(s: Pick<SwitchStatusReport, 'macTable' | 'totals' | 'macTableCounters' | 'protocol' | 'networks'>): string[] {
  const multi = s.networks.length > 1;
  const macs = s.macTable.map((m) => [...(multi ? [m.network] : []), m.mac, m.vlan, `${m.port} ${m.portName}`, m.static ? 'static' : `${m.ageSeconds}s`]);
  const t = s.totals;
  return [
    `MAC TABLE (${s.macTable.length})`,
    table([...(multi ? ['NETWORK'] : []), 'MAC', 'VLAN', 'PORT', 'AGE'], macs),
    '',
    'COUNTERS',
    `  frames in ${t.rxFrames} (${bytes(t.rxBytes)}), out ${t.txFrames} (${bytes(t.txBytes)}), flooded ${t.flooded}`,
    `  drops: runt ${t.drops.runt}, oversize ${t.drops.oversize}, bad source ${t.drops.badSource}, same port ${t.drops.samePort}, VLAN ${t.drops.vlan}, storm ${t.drops.storm}, blocked port ${t.drops.blocked}`,
    `  MAC table: moves ${s.macTableCounters.moves}, moves refused ${s.macTableCounters.moveDenied}, not learned (limits) ${s.macTableCounters.tableFull + s.macTableCounters.portLimit}`,
    `  protocol: ${protocolLine(s.protocol)}`,
  ];
}

/** "3.2s", "4m 5s", "2h 3m", "1d 4h": how long ago, for humans. */
export function duration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '-';
  if (seconds < 60) return `${seconds < 10 ? seconds.toFixed(1) : Math.round(seconds)}s`;
  const s = Math.round(seconds);
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

function dropsText(d: TrafficCounters['drops']): string {
  const named: [string, number][] = [
    ['runt', d.runt],
    ['oversize', d.oversize],
    ['bad source', d.badSource],
    ['same port', d.samePort],
    ['reentrant', d.reentrant],
    ['VLAN not allowed', d.vlan],
    ['storm control', d.storm],
    ['port blocked', d.blocked],
  ];
  const nonzero = named.filter(([, n]) => n > 0);
  return nonzero.length === 0 ? 'none' : nonzero.map(([k, n]) => `${k} ${n}`).join(', ');
}

/** `vswitch status`: one block per port (identity, session, traffic, drops, MACs), then the MAC table and counters. */
export function formatSwitchReport(r: SwitchStatusReport): string {
  const now = Date.parse(r.time);
  const out: string[] = [
    `vswitch (pid ${r.pid}): ${r.mode === 'secure' ? `secure (${r.cipher})` : 'insecure (plaintext, any key may join)'}, UDP ${r.udpPorts.join(',') || '-'}, ${r.ports.length} port${r.ports.length === 1 ? '' : 's'}, ${r.macTable.length} MAC${r.macTable.length === 1 ? '' : 's'}`,
    `  switch key      ${r.publicKey}`,
  ];
  // A one-network switch of transparent ports reads as before: no NETWORKS section, no network rows.
  const multi = r.networks.length > 1;
  const vlans = r.ports.some((p) => p.vlan !== 'transparent');
  if (multi) {
    out.push(
    '',
    `NETWORKS (${r.networks.length})`,
    ...table(
      ['NAME', 'MEMBERS', 'ADMITTED', 'MACS', 'MAX MACS', 'PER PORT', 'STORM LIMIT', 'FRAMES IN', 'BLOCKED', 'ALLOW FILE'],
      r.networks.map((n) => [n.name, n.members, n.admitted, n.macs, n.limits.maxMacs, n.limits.maxMacsPerPort, n.limits.stormLimit > 0 ? `${n.limits.stormLimit}/s` : 'off', n.totals.rxFrames, n.blocked.join(',') || '-', n.allowFile ?? '-']),
    )
      .split('\n')
      .map((l) => `  ${l}`),
    );
  }
  out.push('', `PORTS (${r.ports.length})`);
  for (const p of r.ports) {
    const c = p.counters;
    const rows: [string, string][] = [];
    if (multi || vlans) rows.push(['network', `${p.network}, VLAN ${p.vlan}`]);
    if (p.blocked !== undefined) rows.push(['BLOCKED', `${p.blocked.reason} (${duration(p.blocked.remainingS)} left)`]);
    if (p.publicKey !== undefined) rows.push(['public key', p.publicKey]);
    const over = p.transport === 'ws' ? 'WebSocket' : p.transport === 'tcp' ? 'TCP' : p.transport === 'vxlan' ? `VXLAN, VNI ${p.vni}` : undefined;
    rows.push(['address', over !== undefined ? `${p.address} over ${over}` : p.address]);
    if (!p.linkUp) rows.push(['link', 'down: its MACs are withdrawn']);
    if (p.joinedAt !== undefined) rows.push(['joined', `${p.joinedAt} (${duration((now - Date.parse(p.joinedAt)) / 1000)} ago)`]);
    if (p.lastSeenS !== undefined) rows.push(['last seen', `${duration(p.lastSeenS)} ago`]);
    if (p.lastHandshakeS !== undefined) rows.push(['last handshake', `${duration(p.lastHandshakeS)} ago${p.rekeys !== undefined ? `, rekeys ${p.rekeys}` : ''}`]);
    rows.push(['in', `${c.rxFrames} frames, ${bytes(c.rxBytes)}`]);
    rows.push(['out', `${c.txFrames} frames, ${bytes(c.txBytes)} (flooded ${c.flooded}, errors ${c.txErrors})`]);
    rows.push(['drops', dropsText(c.drops)]);
    if (p.txTooBig) rows.push(['too big', `${p.txTooBig} frames did not fit the VXLAN underlay MTU: dropped`]);
    rows.push(['MACs', p.macs.length === 0 ? 'none' : p.macs.map((m) => (m.vlan ? `${m.mac} vlan ${m.vlan}` : m.mac)).join(', ')]);
    if (p.relayed !== undefined) {
      const r = p.relayed;
      const names = p.knownByNames !== undefined && p.knownByNames.length > 0 ? ` (${p.knownByNames.join(', ')})` : '';
      rows.push(['end to end', `member ${p.memberId}, known by ${(p.knownBy ?? 1) - 1} member(s)${names}; relayed from it ${r.fromFrames} (${bytes(r.fromBytes)}), to it ${r.toFrames} (${bytes(r.toBytes)})`]);
    }
    if (p.nat !== undefined) {
      rows.push(['direct paths', `${p.direct === false ? 'disabled (--no-direct)' : 'on'}, NAT ${p.nat}, own addresses ${p.localAddresses?.join(', ') || 'none'}`]);
    }
    out.push(`  ${p.id}  ${p.name}`);
    for (const [k, v] of rows) out.push(`      ${k.padEnd(15)} ${v}`);
  }
  const pairs = r.pairs ?? [];
  if (pairs.length > 0) {
    const relayed = pairs.filter((x) => x.path === 'relayed').length;
    out.push('', `PAIRS (${pairs.length}: ${pairs.length - relayed} direct, ${relayed} relayed through this switch)`);
    const t = table(
      ['A', 'B', 'PATH', 'WHY / ENDPOINT'],
      pairs.map((x) => [x.a, x.b, x.path, x.reason ?? '']),
    );
    for (const line of t.split('\n')) out.push(`  ${line}`);
  }
  out.push('', ...macAndCounterLines(r));
  if (r.vxlan !== undefined) out.push(`  ${vxlanLine(r.vxlan)}`);
  if (r.workers !== undefined) out.push(`  ${workersLine(r.workers)}`);
  const cap = captureLine(r.capture);
  if (cap !== undefined) out.push(`  ${cap}`);
  return out.join('\n');
}

/** "relay workers: 2, relayed 1200 / 800 datagrams": what each relayed. */
export function workersLine(w: RelayWorkerStatus[]): string {
  const each = w.map((x) => x.sockets.reduce((n, s) => n + s.relayDatagrams, 0));
  const over = w.reduce((n, x) => n + x.passUpDropped, 0);
  const gone = w.filter((x) => !x.live).length;
  return `relay workers: ${w.length - gone}${gone > 0 ? ` (${gone} exited)` : ''}, relayed ${each.join(' / ')} datagrams${over > 0 ? `, ${over} dropped: the queue to the main thread was full` : ''}`;
}

/** "VXLAN: UDP 4789, ..." : the VTEP's socket and what it dropped. */
export function vxlanLine(v: VxlanStatus): string {
  return `VXLAN: UDP ${v.port} (source ports ${v.sourcePorts.join(',')}), datagrams in ${v.rxDatagrams}, delivered ${v.rxDelivered}, dropped: unknown source ${v.unknownSource}, wrong VNI ${v.wrongVni}, malformed ${v.malformed}`;
}

/** "capture: FILE open, 12 frames (3.4 kB), dropped 0" from a capture status; undefined when none runs. */
export function captureLine(capture: unknown): string | undefined {
  if (typeof capture !== 'object' || capture === null) return undefined;
  const c = capture as { file?: unknown; state?: unknown; error?: unknown; counters?: Record<string, unknown> };
  const k = c.counters ?? {};
  const num = (v: unknown): number => (typeof v === 'number' ? v : 0);
  return `capture: ${String(c.file)} ${String(c.state)}, ${num(k['frames'])} frames (${bytes(num(k['bytes']))}), dropped ${num(k['dropped']) + num(k['overflow'])}${typeof c.error === 'string' ? `, ${c.error}` : ''}`;
}

/** `vport status`: the SIGUSR1 block, plus the capture when one runs. */
export function formatPortReport(r: PortStatusReport): string {
  const cap = captureLine(r.capture);
  return formatPortStatus(r) + (cap !== undefined ? `\n  ${cap}` : '');
}

/** The protocol counters, named for humans. */
function protocolLine(p: Record<string, number>): string {
  const n = (k: string): number => p[k] ?? 0;
  return [
    `handshakes ${n('handshakes')}`,
    `rekeys ${n('rekeys')}`,
    `leaves ${n('leaves')}`,
    `timeouts ${n('timeouts')}`,
    `roams ${n('roams')}`,
    `auth failed ${n('authFailed')}`,
    `replayed ${n('replayed')}`,
    `unknown session ${n('unknownIndex')}`,
    `wrong endpoint ${n('wrongEndpoint')}`,
    `malformed ${n('malformed')}`,
    `bad version ${n('badVersion')}`,
    `bad mac1 ${n('badMac1')}`,
    `unlisted keys ${n('unlisted')}`,
    `insecure ports ${n('insecurePorts')}`,
    `refusals sent ${n('refusalsSent')}`,
    `replayed handshakes ${n('replayedInitiations')}`,
    `unconfirmed ${n('unconfirmed')}`,
    `cookies sent ${n('cookiesSent')}`,
    `rate limited ${n('rateLimited')}`,
    `pair handshakes relayed ${n('pairHandshakesRelayed')}`,
    `pair unrouted ${n('pairUnrouted')}`,
    `pair dropped ${n('pairDropped')}`,
    `directory messages ${n('directoryMessages')}`,
  ].join(', ');
}

export function formatPortStatus(s: PortClientStatus): string {
  const c = s.counters;
  const extra = Object.entries(c)
    .filter(([, v]) => v > 0)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  return [
    `device ${s.device}: ${s.state} (${s.mode === 'secure' ? s.cipher : 'insecure, plaintext'})${s.linkUp ? '' : ', link down'}, switch ${s.switch}, session ${s.session}, rtt ${s.rttMs === undefined ? '-' : s.rttMs.toFixed(2) + ' ms'}${s.lastHandshakeS !== undefined ? `, last handshake ${s.lastHandshakeS}s ago` : ''}`,
    `  public key ${s.publicKey}`,
    ...(s.underlayLoop !== undefined ? [`  problem: ${s.underlayLoop.reason} (${s.underlayLoop.frames} frames dropped, the last ${duration(s.underlayLoop.lastS)} ago)`] : []),
    `  network: ${s.network || '- (the switch has not said)'}, VLAN ${s.vlan || '-'} (the switch decides both)`,
    `  tap: rx ${s.tap.rxFrames} frames (${bytes(s.tap.rxBytes)}), tx ${s.tap.txFrames} frames (${bytes(s.tap.txBytes)}), dropped ${s.tap.txDropped}`,
    `  transport: ${s.transport.current} since ${s.transport.since}: ${s.transport.reason}${transportExtra(s.transport)}`,
    `  udp: rx ${s.udp.rxDatagrams} datagrams, tx ${s.udp.txDatagrams}, errors ${s.udp.rxErrors + s.udp.txErrors}`,
    `  counters: ${extra || 'all zero'}`,
    ...peerLines(s),
  ].join('\n');
}

/** The stream behind a port's transport line: where, its counters, and how stable UDP looks from it. */
function transportExtra(t: PortClientStatus['transport']): string {
  const parts: string[] = [];
  if (t.stream !== undefined) parts.push(`${t.stream.kind} stream ${t.stream.state}${t.streamRemote !== undefined ? ` to ${t.streamRemote}` : ''}`);
  if (t.streamStats !== undefined) parts.push(`stream rx ${t.streamStats.rxDatagrams}, tx ${t.streamStats.txDatagrams}, dropped ${t.streamStats.txDropped}`);
  if (t.udpStableMs !== undefined) parts.push(`UDP answering for ${duration(t.udpStableMs / 1000)}`);
  return parts.length > 0 ? ` (${parts.join('; ')})` : '';
}

/** The end-to-end part of a port's status: its member id and MACs, a row per peer, the pair counters. */
function peerLines(s: PortClientStatus): string[] {
  const pc = Object.entries(s.pairs)
    .filter(([, v]) => v > 0)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  const out = [`  end to end: member ${s.memberId || '-'}, MACs ${s.macs.join(', ') || 'none'}; ${pc || 'all zero'}`];
  out.push(
    `  direct paths: ${s.direct ? 'on' : 'off (--no-direct)'}, NAT ${s.nat}${s.publicAddress !== undefined ? `, seen by the switch as ${s.publicAddress}` : ''}, own addresses ${s.localAddresses.join(', ') || 'none'}`,
  );
  if (s.peers.length > 0) {
    const now = Date.now();
    const rows = s.peers.map((p) => [
      p.id || '-',
      p.name,
      p.publicKey.slice(0, 12) + '…',
      p.path === 'direct' ? `direct ${p.endpoint ?? ''}` : p.path,
      p.rttMs !== undefined ? `${p.rttMs.toFixed(2)} ms` : '-',
      p.pathSince !== undefined ? `${duration((now - Date.parse(p.pathSince)) / 1000)}` : '-',
      p.stale === true ? `${p.state} (stale)` : p.state,
      p.lastHandshakeS !== undefined ? `${duration(p.lastHandshakeS)} ago` : '-',
      `${bytes(p.txDirectBytes)} / ${bytes(p.txRelayBytes)}`,
      `${bytes(p.rxDirectBytes)} / ${bytes(p.rxRelayBytes)}`,
      p.authFailed,
      p.srcNotOwned,
      p.macs,
    ]);
    const t = table(['ID', 'PEER', 'KEY', 'PATH', 'RTT', 'FOR', 'STATE', 'HANDSHAKE', 'TX DIRECT/RELAY', 'RX DIRECT/RELAY', 'AUTH FAIL', 'BAD SRC', 'MACS'], rows);
    for (const line of t.split('\n')) out.push(`  ${line}`);
    for (const p of s.peers) {
      if (p.path === 'relayed' && p.reason !== undefined) out.push(`  ${p.name}: relayed: ${p.reason}`);
      const cands = p.candidates.map((c) => `${c.address} ${c.kind}${c.working ? ` ok${c.rttMs !== undefined ? ` ${c.rttMs.toFixed(2)} ms` : ''}` : ''}`);
      if (cands.length > 0) out.push(`  ${p.name}: candidates ${cands.join(', ')}`);
    }
  }
  return out;
}
