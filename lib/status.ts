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
  const p = s.protocol;
  return [
    `PORTS (${s.ports.length})`,
    table(['ID', 'NAME', 'ADDRESS', 'SEEN', 'RX FRAMES', 'RX BYTES', 'TX FRAMES', 'TX BYTES', 'DROPS', 'MACS'], ports),
    '',
    `MAC TABLE (${s.macTable.length})`,
    table(['MAC', 'VLAN', 'PORT', 'AGE'], macs),
    '',
    'COUNTERS',
    `  frames in ${t.rxFrames} (${bytes(t.rxBytes)}), out ${t.txFrames} (${bytes(t.txBytes)}), flooded ${t.flooded}`,
    `  drops: runt ${t.drops.runt}, oversize ${t.drops.oversize}, bad source ${t.drops.badSource}, same port ${t.drops.samePort}`,
    `  MAC table: moves ${s.macTableCounters.moves ?? 0}, not learned (limits) ${(s.macTableCounters.tableFull ?? 0) + (s.macTableCounters.portLimit ?? 0)}`,
    `  protocol: joins ${p.joins}, leaves ${p.leaves}, timeouts ${p.timeouts}, roams ${p.roams}, malformed ${p.malformed}, bad version ${p.badVersion}, unknown session ${p.dataUnknownIndex + p.controlUnknownIndex}, bad token ${p.badToken}, wrong endpoint ${p.dataWrongEndpoint}`,
  ].join('\n');
}

export function formatPortStatus(s: PortClientStatus): string {
  return [
    `device ${s.device}: ${s.state}, switch ${s.switch}, session ${s.localIndex}/${s.remoteIndex}, rtt ${s.rttMs === undefined ? '-' : s.rttMs.toFixed(2) + ' ms'}`,
    `  tap: rx ${s.tap.rxFrames} frames (${bytes(s.tap.rxBytes)}), tx ${s.tap.txFrames} frames (${bytes(s.tap.txBytes)}), dropped ${s.tap.txDropped}`,
    `  udp: rx ${s.udp.rxDatagrams} datagrams, tx ${s.udp.txDatagrams}, errors ${s.udp.rxErrors + s.udp.txErrors}`,
    `  drops: not joined ${s.counters.txNotJoined}, foreign ${s.counters.rxForeign}, wrong session ${s.counters.rxWrongIndex}`,
  ].join('\n');
}
