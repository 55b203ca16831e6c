// Human-readable status of a switch or a port: aligned tables, no colours.
import type { SwitchServerSnapshot } from './switch-server.js';
import type { PortClientStatus } from './port-client.js';

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

export function formatSwitchStatus(s: SwitchServerSnapshot): string {
  const bySwitchPort = new Map(s.sessions.map((x) => [x.switchPort, x]));
  const ports = s.ports.map((p) => {
    const sess = bySwitchPort.get(p.id);
    const d = p.counters.drops;
    const drops = d.runt + d.oversize + d.badSource + d.samePort + d.reentrant;
    return [p.id, p.name, sess?.address ?? 'local', sess ? `${sess.lastSeenS}s` : '-', p.counters.rxFrames, bytes(p.counters.rxBytes), p.counters.txFrames, bytes(p.counters.txBytes), drops, p.macs.length];
  });
  const macs = s.macTable.map((m) => [m.mac, m.vlan, `${m.port} ${m.portName}`, m.static ? 'static' : `${m.ageSeconds}s`]);
  const t = s.totals;
  return [
    `PORTS (${s.ports.length})${s.mode === 'secure' ? '' : '  [insecure: plaintext protocol 1]'}`,
    table(['ID', 'NAME', 'ADDRESS', 'SEEN', 'RX FRAMES', 'RX BYTES', 'TX FRAMES', 'TX BYTES', 'DROPS', 'MACS'], ports),
    '',
    `MAC TABLE (${s.macTable.length})`,
    table(['MAC', 'VLAN', 'PORT', 'AGE'], macs),
    '',
    'COUNTERS',
    `  frames in ${t.rxFrames} (${bytes(t.rxBytes)}), out ${t.txFrames} (${bytes(t.txBytes)}), flooded ${t.flooded}`,
    `  drops: runt ${t.drops.runt}, oversize ${t.drops.oversize}, bad source ${t.drops.badSource}, same port ${t.drops.samePort}`,
    `  MAC table: moves ${s.macTableCounters.moves}, moves refused ${s.macTableCounters.moveDenied}, not learned (limits) ${s.macTableCounters.tableFull + s.macTableCounters.portLimit}`,
    `  protocol: ${protocolLine(s.mode, s.protocol)}`,
  ].join('\n');
}

/** Insecure and secure engines count different things; each line names its counters. */
function protocolLine(mode: 'insecure' | 'secure', p: Record<string, number>): string {
  const n = (k: string): number => p[k] ?? 0;
  if (mode === 'insecure') {
    return `joins ${n('joins')}, leaves ${n('leaves')}, timeouts ${n('timeouts')}, roams ${n('roams')}, malformed ${n('malformed')}, bad version ${n('badVersion')}, unknown session ${n('dataUnknownIndex') + n('controlUnknownIndex')}, bad token ${n('badToken')}, wrong endpoint ${n('dataWrongEndpoint')}`;
  }
  return [
    `handshakes ${n('handshakes')}`,
    `rekeys ${n('rekeys')}`,
    `leaves ${n('leaves')}`,
    `timeouts ${n('timeouts')}`,
    `roams ${n('roams')}`,
    `auth failed ${n('authFailed')}`,
    `replayed ${n('replayed')}`,
    `unknown session ${n('unknownIndex')}`,
    `malformed ${n('malformed')}`,
    `bad version ${n('badVersion')}`,
    `bad mac1 ${n('badMac1')}`,
    `unlisted keys ${n('unlisted')}`,
    `replayed handshakes ${n('replayedInitiations')}`,
    `unconfirmed ${n('unconfirmed')}`,
    `cookies sent ${n('cookiesSent')}`,
    `rate limited ${n('rateLimited')}`,
  ].join(', ');
}

export function formatPortStatus(s: PortClientStatus): string {
  const c = s.counters;
  const extra = Object.entries(c)
    .filter(([, v]) => v > 0)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  return [
    `device ${s.device}: ${s.state} (${s.mode}), switch ${s.switch}, session ${s.session}, rtt ${s.rttMs === undefined ? '-' : s.rttMs.toFixed(2) + ' ms'}${s.lastHandshakeS !== undefined ? `, last handshake ${s.lastHandshakeS}s ago` : ''}`,
    ...(s.publicKey ? [`  public key ${s.publicKey}`] : []),
    `  tap: rx ${s.tap.rxFrames} frames (${bytes(s.tap.rxBytes)}), tx ${s.tap.txFrames} frames (${bytes(s.tap.txBytes)}), dropped ${s.tap.txDropped}`,
    `  udp: rx ${s.udp.rxDatagrams} datagrams, tx ${s.udp.txDatagrams}, errors ${s.udp.rxErrors + s.udp.txErrors}`,
    `  counters: ${extra || 'all zero'}`,
  ].join('\n');
}
