// Prometheus metrics of a vswitch or vport: text exposition format 0.0.4,
// rendered from status reports on each scrape, served by node:http at /metrics.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { PortStatusReport, SwitchStatusReport } from './status.js';
import { EtherlinkError } from '../core/errors.js';

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
export const METRICS_PATH = '/metrics';

type Labels = Record<string, string>;
type Sample = [labels: Labels, value: number];

const escapeHelp = (s: string): string => s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
const escapeLabel = (s: string): string => s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/** Builds one exposition: each family once, HELP and TYPE before its samples. */
export class Exposition {
  private readonly lines: string[] = [];
  private readonly names = new Set<string>();

  constructor(private readonly prefix: string) {}

  private family(type: 'counter' | 'gauge', name: string, help: string, samples: Sample[]): this {
    const full = this.prefix + name;
    if (this.names.has(full)) throw new EtherlinkError('ERR_INVALID_ARG_VALUE', `metric ${full} declared twice`);
    if (type === 'counter' && !full.endsWith('_total')) throw new EtherlinkError('ERR_INVALID_ARG_VALUE', `counter ${full} must end in _total`);
    this.names.add(full);
    this.lines.push(`# HELP ${full} ${escapeHelp(help)}`, `# TYPE ${full} ${type}`);
    for (const [labels, value] of samples) {
      const l = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
      this.lines.push(`${full}${l.length ? `{${l.join(',')}}` : ''} ${formatValue(value)}`);
    }
    return this;
  }

  counter(name: string, help: string, samples: Sample[] | number): this {
    return this.family('counter', name, help, typeof samples === 'number' ? [[{}, samples]] : samples);
  }

  gauge(name: string, help: string, samples: Sample[] | number | undefined): this {
    return this.family('gauge', name, help, samples === undefined ? [] : typeof samples === 'number' ? [[{}, samples]] : samples);
  }

  text(): string {
    return this.lines.join('\n') + '\n';
  }
}

const DROP_REASONS = [
  ['runt', 'runt'],
  ['oversize', 'oversize'],
  ['bad_source', 'badSource'],
  ['same_port', 'samePort'],
  ['reentrant', 'reentrant'],
  ['vlan', 'vlan'],
  ['storm', 'storm'],
  ['blocked', 'blocked'],
] as const;

/** Label values per port: the port name, made unique if two ports share one. */
function portLabels(r: SwitchStatusReport): string[] {
  const seen = new Map<string, number>();
  for (const p of r.ports) seen.set(p.name, (seen.get(p.name) ?? 0) + 1);
  return r.ports.map((p) => (seen.get(p.name)! > 1 ? `${p.name}#${p.id}` : p.name));
}

export function renderSwitchMetrics(r: SwitchStatusReport): string {
  const x = new Exposition('etherlink_switch_');
  const n = (k: string): number => r.protocol[k] ?? 0;
  const names = portLabels(r);
  const perPort = (f: (i: number) => number, extra: Labels = {}): Sample[] => r.ports.map((_, i) => [{ network: r.ports[i]!.network, port: names[i]!, ...extra }, f(i)]);
  const dir = (rx: (i: number) => number, tx: (i: number) => number): Sample[] => [...perPort(rx, { direction: 'rx' }), ...perPort(tx, { direction: 'tx' })];
  const sum = (f: (u: SwitchStatusReport['udp'][number]) => number): number => r.udp.reduce((a, u) => a + f(u), 0);
  // Every socket on the switch's ports: the main thread's and the relay workers'.
  const allUdp = [...r.udp, ...(r.workers ?? []).flatMap((w) => w.sockets)];
  const sumAll = (f: (u: SwitchStatusReport['udp'][number]) => number): number => allUdp.reduce((a, u) => a + f(u), 0);

  x.gauge('info', 'Constant 1, labelled with the mode (secure, or insecure: plaintext), the cipher and the switch key.', [[{ mode: r.mode, cipher: r.cipher, public_key: r.publicKey }, 1]])
    .gauge('ports', 'Ports attached to the switch (remote and local).', r.ports.length)
    .gauge('sessions', 'Remote ports with an established session.', r.ports.filter((p) => p.address !== 'local' && p.transport !== 'vxlan').length)
    .gauge('vteps', 'Remote VXLAN VTEPs attached as ports (vswitch --vxlan).', r.ports.filter((p) => p.transport === 'vxlan').length)
    .gauge('port_info', 'Constant 1 per port, labelled with its public key (secure mode) and underlay address.', r.ports.map((p, i) => [{ network: r.ports[i]!.network, port: names[i]!, public_key: p.publicKey ?? '', address: p.address }, 1]))
    .counter('port_frames_total', 'Frames the switch received from (rx) and sent to (tx) each port.', dir((i) => r.ports[i]!.counters.rxFrames, (i) => r.ports[i]!.counters.txFrames))
    .counter('port_bytes_total', 'Ethernet bytes the switch received from (rx) and sent to (tx) each port.', dir((i) => r.ports[i]!.counters.rxBytes, (i) => r.ports[i]!.counters.txBytes))
    .counter('port_flooded_frames_total', 'Frames sent to each port because the destination was unknown, broadcast or multicast.', perPort((i) => r.ports[i]!.counters.flooded))
    .counter('port_drops_total', 'Frames from each port dropped by the switch, by reason.', DROP_REASONS.flatMap(([label, key]) => perPort((i) => r.ports[i]!.counters.drops[key], { reason: label })))
    .counter(
      'port_relayed_datagrams_total',
      'End-to-end datagrams the switch relayed unopened, from each remote port and to it.',
      r.ports.flatMap((p, i): Sample[] => (p.relayed ? [[{ network: r.ports[i]!.network, port: names[i]!, direction: 'from' }, p.relayed.fromFrames], [{ network: r.ports[i]!.network, port: names[i]!, direction: 'to' }, p.relayed.toFrames]] : [])),
    )
    .counter(
      'port_relayed_bytes_total',
      'Bytes of end-to-end datagrams (header, ciphertext, tag) the switch relayed unopened, from each remote port and to it.',
      r.ports.flatMap((p, i): Sample[] => (p.relayed ? [[{ network: r.ports[i]!.network, port: names[i]!, direction: 'from' }, p.relayed.fromBytes], [{ network: r.ports[i]!.network, port: names[i]!, direction: 'to' }, p.relayed.toBytes]] : [])),
    )
    .counter(
      'port_direct_bytes_total',
      'Frame bytes each remote port reports it sent (tx) and received (rx) on direct paths, which the switch does not carry (self-reported; starts over when its vport restarts).',
      r.ports.flatMap((p, i): Sample[] => (p.directTraffic ? [[{ network: r.ports[i]!.network, port: names[i]!, direction: 'tx' }, p.directTraffic.txBytes], [{ network: r.ports[i]!.network, port: names[i]!, direction: 'rx' }, p.directTraffic.rxBytes]] : [])),
    )
    .gauge('port_known_by', 'Members holding each remote port\'s directory entry (itself excluded).', r.ports.flatMap((p, i): Sample[] => (p.knownBy !== undefined ? [[{ network: r.ports[i]!.network, port: names[i]! }, Math.max(0, p.knownBy - 1)]] : [])))
    .counter('pair_handshakes_relayed_total', 'Handshake messages of end-to-end sessions relayed between members.', n('pairHandshakesRelayed'))
    .counter('directory_messages_total', 'Directory messages (PEER) sent to members: entries, changes, withdrawals.', n('directoryMessages'))
    .counter('pair_datagrams_dropped_total', 'End-to-end datagrams the switch did not relay: from no member, or for one that is gone.', n('pairDropped'))
    .gauge('port_macs', 'MAC addresses learned on each port.', perPort((i) => r.ports[i]!.macs.length))
    .gauge('port_blocked', '1 while the loop guard blocks the port (a MAC flapping between it and another: a loop), else 0.', perPort((i) => (r.ports[i]!.blocked !== undefined ? 1 : 0)))
    .gauge('network_members', 'Members joined to each network.', (r.networks ?? []).map((net): Sample => [{ network: net.name }, net.members]))
    .gauge('network_admitted_keys', 'Keys in each network\'s allow file.', (r.networks ?? []).map((net): Sample => [{ network: net.name }, net.admitted]))
    .gauge('network_mac_table_entries', 'Entries in each network\'s MAC table.', (r.networks ?? []).map((net): Sample => [{ network: net.name }, net.macs]))
    .counter('network_frames_total', 'Frames through each network\'s switch: received (rx) and sent (tx, per egress copy).', (r.networks ?? []).flatMap((net): Sample[] => [[{ network: net.name, direction: 'rx' }, net.totals.rxFrames], [{ network: net.name, direction: 'tx' }, net.totals.txFrames]]))
    .counter('network_drops_total', 'Frames dropped by each network\'s switch, by reason.', (r.networks ?? []).flatMap((net) => DROP_REASONS.map(([label, key]): Sample => [{ network: net.name, reason: label }, net.totals.drops[key]])))
    .gauge('port_link_up', '1 while the port\'s device is up, 0 while it is down (its MACs withdrawn).', perPort((i) => (r.ports[i]!.linkUp ? 1 : 0)))
    .gauge('port_last_seen_seconds', 'Seconds since each remote port was last heard from.', r.ports.flatMap((p, i): Sample[] => (p.lastSeenS !== undefined ? [[{ network: r.ports[i]!.network, port: names[i]! }, p.lastSeenS]] : [])))
    .gauge('port_last_handshake_seconds', "Seconds since each remote port's last completed handshake.", r.ports.flatMap((p, i): Sample[] => (p.lastHandshakeS !== undefined ? [[{ network: r.ports[i]!.network, port: names[i]! }, p.lastHandshakeS]] : [])))
    .counter('frames_total', 'Frames through the switch: received (rx) and sent (tx, per egress copy).', [[{ direction: 'rx' }, r.totals.rxFrames], [{ direction: 'tx' }, r.totals.txFrames]])
    .counter('bytes_total', 'Ethernet bytes through the switch: received (rx) and sent (tx, per egress copy).', [[{ direction: 'rx' }, r.totals.rxBytes], [{ direction: 'tx' }, r.totals.txBytes]])
    .counter('flooded_frames_total', 'Egress copies sent because the destination was unknown, broadcast or multicast.', r.totals.flooded)
    .counter('drops_total', 'Frames dropped by the switch, by reason (all ports, including ports that have left).', DROP_REASONS.map(([label, key]): Sample => [{ reason: label }, r.totals.drops[key]]))
    .gauge('pairs_relayed', 'Pairs of members that reach each other only through this switch, as they report it.', (r.pairs ?? []).filter((p) => p.path === 'relayed').length)
    .gauge('pairs_direct', 'Pairs of members that reach each other directly, as they report it.', (r.pairs ?? []).filter((p) => p.path === 'direct').length)
    .gauge('relay_workers', 'Relay worker threads running (vswitch --workers): each relays the pair data of a share of the destinations.', (r.workers ?? []).filter((w) => w.live).length)
    .counter(
      'relay_worker_datagrams_total',
      'Pair data relayed by each relay worker thread (worker="main": by the main thread\'s own sockets).',
      [...(r.workers ?? []).map((w): Sample => [{ worker: String(w.index + 1) }, w.sockets.reduce((n, s) => n + s.relayDatagrams, 0)]), [{ worker: 'main' }, sum((u) => u.relayDatagrams)]],
    )
    .counter('relay_worker_pass_up_dropped_total', 'Pair data a relay worker could neither relay nor pass to the main thread (its queue there was full).', (r.workers ?? []).map((w): Sample => [{ worker: String(w.index + 1) }, w.passUpDropped]))
    .counter('vxlan_send_errors_total', 'VXLAN datagrams the source-port pool could not send: errors and full send queues.', r.vxlan === undefined ? [] : [[{ kind: 'tx_error' }, r.vxlan.send.txErrors], [{ kind: 'tx_queue_full' }, r.vxlan.send.txDropped]])
    .counter(
      'vxlan_datagrams_total',
      'VXLAN datagrams received: delivered to a VTEP port, or dropped because the source is no configured VTEP, the VNI is not its, or the header is malformed.',
      r.vxlan === undefined ? [] : [[{ result: 'delivered' }, r.vxlan.rxDelivered], [{ result: 'unknown_source' }, r.vxlan.unknownSource], [{ result: 'wrong_vni' }, r.vxlan.wrongVni], [{ result: 'malformed' }, r.vxlan.malformed]],
    )
    .gauge('mac_table_entries', 'Entries in the MAC table.', r.macTable.length)
    .counter('mac_moves_total', 'MAC addresses that moved to another port.', r.macTableCounters.moves)
    .counter('mac_moves_refused_total', 'MAC moves refused because the owning port still used the address.', r.macTableCounters.moveDenied)
    .counter('macs_not_learned_total', 'Source MACs not learned because a limit was reached (the frames still pass).', [[{ reason: 'table_full' }, r.macTableCounters.tableFull], [{ reason: 'port_limit' }, r.macTableCounters.portLimit]])
    .counter('handshakes_total', 'Completed handshakes (joins and rekeys).', n('handshakes'))
    .counter('handshake_failures_total', 'Handshakes refused, by reason.', [
      [{ reason: 'bad_mac1' }, n('badMac1') - n('insecurePorts')],
      [{ reason: 'insecure_port' }, n('insecurePorts')],
      [{ reason: 'unlisted_key' }, n('unlisted')],
      [{ reason: 'switch_full' }, n('switchFull')],
      [{ reason: 'decrypt' }, n('handshakeFailures')],
      [{ reason: 'replayed' }, n('replayedInitiations')],
      [{ reason: 'rate_limited' }, n('rateLimited')],
      [{ reason: 'unconfirmed' }, n('unconfirmed')],
    ])
    .counter('cookies_sent_total', 'Cookie replies sent to handshakes under load.', n('cookiesSent'))
    .counter('rekeys_total', 'Session rekeys.', n('rekeys'))
    .counter('port_leaves_total', 'Ports that left, by reason.', [[{ reason: 'goodbye' }, n('leaves')], [{ reason: 'timeout' }, n('timeouts')]])
    .counter('roams_total', 'Ports whose underlay address changed.', n('roams'))
    .counter('datagrams_dropped_total', 'Underlay datagrams dropped before the switch, by reason.', [
      [{ reason: 'malformed' }, n('malformed')],
      [{ reason: 'auth_failed' }, n('authFailed')],
      [{ reason: 'replayed' }, n('replayed')],
      [{ reason: 'unknown_session' }, n('unknownIndex')],
      [{ reason: 'wrong_endpoint' }, n('wrongEndpoint')],
      [{ reason: 'bad_version' }, n('badVersion')],
    ])
    .gauge('port_transport', 'Constant 1 per remote port, labelled with how it reaches the switch now (udp, tcp, ws).', r.ports.flatMap((p, i): Sample[] => (p.transport !== undefined ? [[{ network: r.ports[i]!.network, port: names[i]!, transport: p.transport }, 1]] : [])))
    .gauge('streams_open', 'Stream connections (TCP, WebSocket) open now.', r.streams['open'] ?? 0)
    .counter('streams_total', 'Stream connections by outcome: accepted, refused (over the limits), closed for no handshake in time, idle, or malformed.', [
      [{ outcome: 'accepted' }, r.streams['accepted'] ?? 0],
      [{ outcome: 'refused' }, r.streams['refused'] ?? 0],
      [{ outcome: 'auth_timeout' }, r.streams['authTimeouts'] ?? 0],
      [{ outcome: 'idle_timeout' }, r.streams['idleTimeouts'] ?? 0],
      [{ outcome: 'malformed' }, r.streams['malformed'] ?? 0],
      [{ outcome: 'ws_rejected' }, r.streams['wsRejected'] ?? 0],
    ])
    .counter('stream_datagrams_dropped_total', 'Datagrams dropped on streams: too long to take, or the send queue full (head-of-line bound).', [
      [{ reason: 'skipped' }, r.streams['skipped'] ?? 0],
      [{ reason: 'send_queue_full' }, r.streams['txDropped'] ?? 0],
    ])
    .counter('udp_datagrams_total', 'Underlay UDP datagrams received (rx) and sent (tx), relay workers included.', [[{ direction: 'rx' }, sumAll((u) => u.rxDatagrams)], [{ direction: 'tx' }, sumAll((u) => u.txDatagrams)]])
    .counter('udp_bytes_total', 'Underlay UDP payload bytes received (rx) and sent (tx), relay workers included.', [[{ direction: 'rx' }, sumAll((u) => u.rxBytes)], [{ direction: 'tx' }, sumAll((u) => u.txBytes)]])
    .counter('udp_errors_total', 'Underlay socket errors and drops, by kind.', [
      [{ kind: 'rx_error' }, sumAll((u) => u.rxErrors)],
      [{ kind: 'tx_error' }, sumAll((u) => u.txErrors)],
      [{ kind: 'tx_queue_full' }, sumAll((u) => u.txDropped)],
      [{ kind: 'rx_truncated' }, sumAll((u) => u.rxTruncated)],
    ]);
  return x.text();
}

export function renderPortMetrics(r: PortStatusReport): string {
  const x = new Exposition('etherlink_port_');
  const n = (k: string): number => r.counters[k] ?? 0;
  x.gauge('info', 'Constant 1, labelled with the device, its MAC, the switch address, the mode, the cipher and the public key.', [
    [{ device: r.device, mac: r.mac, switch: r.switch, mode: r.mode, cipher: r.cipher, public_key: r.publicKey }, 1],
  ])
    .gauge('joined', '1 while joined to the switch, 0 otherwise.', r.state === 'joined' ? 1 : 0)
    .gauge('link_up', '1 while the device is up, 0 while it is down (the switch withdraws its MACs).', r.linkUp ? 1 : 0)
    .gauge('rtt_seconds', 'Round-trip time to the switch, from keepalives.', r.rttMs === undefined ? undefined : r.rttMs / 1000)
    .gauge('last_handshake_seconds', 'Seconds since the last completed handshake.', r.lastHandshakeS)
    .counter('frames_total', 'Frames read from the device towards the switch (rx) and written to it from the switch (tx).', [[{ direction: 'rx' }, r.tap.rxFrames], [{ direction: 'tx' }, r.tap.txFrames]])
    .counter('bytes_total', 'Ethernet bytes read from the device (rx) and written to it (tx).', [[{ direction: 'rx' }, r.tap.rxBytes], [{ direction: 'tx' }, r.tap.txBytes]])
    .counter('device_drops_total', 'Frames for the device dropped because its write queue was full.', r.tap.txDropped)
    .gauge('transport', '1 for the transport datagrams to the switch go over now (udp, tcp or ws), 0 for the others.', (['udp', 'tcp', 'ws'] as const).map((t): Sample => [{ transport: t }, r.transport.current === t ? 1 : 0]))
    .counter('transport_changes_total', 'Moves between transports to the switch (UDP, TCP, WebSocket).', r.transport.switches)
    .counter('stream_datagrams_total', 'Datagrams over the stream to the switch: received (rx), sent (tx), dropped (the send queue was full).', [
      [{ direction: 'rx' }, r.transport.streamStats?.rxDatagrams ?? 0],
      [{ direction: 'tx' }, r.transport.streamStats?.txDatagrams ?? 0],
      [{ direction: 'dropped' }, r.transport.streamStats?.txDropped ?? 0],
    ])
    .counter('udp_datagrams_total', 'Underlay UDP datagrams received (rx) and sent (tx).', [[{ direction: 'rx' }, r.udp.rxDatagrams], [{ direction: 'tx' }, r.udp.txDatagrams]])
    .counter('udp_bytes_total', 'Underlay UDP payload bytes received (rx) and sent (tx).', [[{ direction: 'rx' }, r.udp.rxBytes], [{ direction: 'tx' }, r.udp.txBytes]])
    .counter('handshakes_total', 'Completed handshakes (joins and rekeys).', n('handshakes'))
    .counter('handshakes_sent_total', 'Handshake initiations sent.', n('handshakesSent'))
    .counter('handshake_failures_total', 'Handshake responses that failed to verify.', n('handshakeFailures'))
    .counter('rekeys_total', 'Session rekeys.', n('rekeys'))
    .counter('datagrams_dropped_total', 'Datagrams from the switch dropped, by reason.', [
      [{ reason: 'malformed' }, n('malformed')],
      [{ reason: 'auth_failed' }, n('authFailed')],
      [{ reason: 'replayed' }, n('replayed')],
      [{ reason: 'unknown_session' }, n('unknownIndex')],
      [{ reason: 'foreign_source' }, n('rxForeign')],
    ])
    .counter('frames_not_sent_total', 'Device frames not sent to the switch, by reason.', [
      [{ reason: 'not_joined' }, n('txNotJoined')],
      [{ reason: 'oversize' }, n('txOversize')],
      // Our own datagrams to the switch, routed back into our TAP: refused (a route to fix).
      [{ reason: 'underlay_loop' }, n('underlayLoops')],
    ])
    .gauge('pair_sessions', 'End-to-end sessions with other ports that are up.', r.peers.filter((p) => p.state === 'up').length)
    .counter('path_frames_total', 'Device frames sent end to end (pair) or through the switch (switch: flooded, unknown, or no session yet).', [
      [{ path: 'pair' }, r.pairs.txPair],
      [{ path: 'switch' }, r.pairs.txViaSwitch],
    ])
    .counter('pair_frames_received_total', 'Frames received end to end and written to the device.', r.pairs.rxPair)
    .counter('pair_drops_total', 'End-to-end datagrams or frames dropped, by reason.', [
      [{ reason: 'auth_failed' }, r.pairs.authFailed],
      [{ reason: 'replayed' }, r.pairs.replayed],
      [{ reason: 'unknown_session' }, r.pairs.unknownIndex],
      [{ reason: 'source_not_owned' }, r.pairs.srcNotOwned],
      [{ reason: 'destination_not_here' }, r.pairs.dstNotHere],
      [{ reason: 'group_destination' }, r.pairs.dstGroup],
      [{ reason: 'malformed' }, r.pairs.malformed],
    ])
    .counter('pair_handshakes_total', 'Completed end-to-end handshakes (new sessions and rekeys).', r.pairs.handshakes)
    .counter('peer_bytes_total', 'Ethernet bytes sent to (tx) and received from (rx) each peer end to end.', r.peers.flatMap((p): Sample[] => [[{ peer: p.name, direction: 'tx' }, p.txBytes], [{ peer: p.name, direction: 'rx' }, p.rxBytes]]))
    .counter(
      'peer_path_bytes_total',
      'Ethernet bytes to (tx) and from (rx) each peer on its direct path and through the relay (a frame sent both ways while a direct path is in doubt counts on both).',
      r.peers.flatMap((p): Sample[] => [
        [{ peer: p.name, path: 'direct', direction: 'tx' }, p.txDirectBytes],
        [{ peer: p.name, path: 'direct', direction: 'rx' }, p.rxDirectBytes],
        [{ peer: p.name, path: 'relay', direction: 'tx' }, p.txRelayBytes],
        [{ peer: p.name, path: 'relay', direction: 'rx' }, p.rxRelayBytes],
      ]),
    )
    .gauge('peer_direct', '1 while frames to the peer take a direct path, 0 while the switch relays them.', r.peers.flatMap((p): Sample[] => (p.path === '-' ? [] : [[{ peer: p.name }, p.path === 'direct' ? 1 : 0]])))
    .gauge('peer_rtt_seconds', "Round-trip time of each peer's direct path.", r.peers.flatMap((p): Sample[] => (p.rttMs !== undefined ? [[{ peer: p.name }, p.rttMs / 1000]] : [])))
    .counter('path_changes_total', 'Path changes of all peers (direct <-> relayed, or another direct address).', r.pairs.pathChanges)
    .counter('probes_total', 'Direct-path probes sent (tx), answered for peers (answered) and answers received (rx).', [
      [{ direction: 'tx' }, r.pairs.probesSent],
      [{ direction: 'answered' }, r.pairs.probesAnswered],
      [{ direction: 'rx' }, r.pairs.pongsReceived],
    ]);
  return x.text();
}

/** GET /metrics: the current exposition; anything else 404 (405 for other methods on /metrics). */
export class MetricsServer {
  private constructor(private readonly server: Server) {}

  static listen(at: { address: string; port: number }, render: () => string): Promise<MetricsServer> {
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (path !== METRICS_PATH) {
        res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end(`not found: metrics are at ${METRICS_PATH}\n`);
        return;
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('use GET\n');
        return;
      }
      let body: string;
      try {
        body = render();
      } catch (err) {
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`${(err as Error).message}\n`);
        return;
      }
      res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE, 'content-length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
    });
    // A scraper that stalls must not hold sockets for ever.
    server.requestTimeout = 10_000;
    server.headersTimeout = 5_000;
    return listenHttp(server, at).then(() => new MetricsServer(server));
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  close(): void {
    this.server.close();
    this.server.closeAllConnections();
  }
}

/** Why --metrics could not listen, in words that say what to do. */
export function metricsListenError(text: string, err: unknown): EtherlinkError {
  const code = (err as { code?: string }).code;
  const why =
    code === 'EADDRINUSE'
      ? 'the port is in use: choose another'
      : code === 'EADDRNOTAVAIL'
        ? 'no interface here has that address'
        : code === 'EACCES'
          ? 'ports below 1024 need privilege: choose a higher one'
          : code === 'ENOTFOUND' || code === 'EAI_AGAIN'
            ? 'the address does not resolve'
            : (err as Error).message;
  return new EtherlinkError(code ?? 'EIO', `--metrics ${text}: cannot listen: ${why}`, { cause: err });
}

/** Bind an HTTP server at `at`: resolves once it listens, rejects with the bind error (EADDRINUSE, ...). */
export function listenHttp(server: Server, at: { address: string; port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.address, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
