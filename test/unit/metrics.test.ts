// Prometheus text exposition as rendered: escaping, family rules, and the
// metrics a switch report turns into.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Exposition, renderSwitchMetrics } from '../../lib/daemon/metrics.js';
import { parseMetricsAddress } from '../../cli/args.js';
import type { SwitchStatusReport } from '../../lib/daemon/status.js';

test('HELP and label values are escaped; counters must end in _total; a family is declared once', () => {
  const x = new Exposition('t_');
  x.gauge('g', 'a \\ back\nslash', [[{ name: 'quote " back \\ nl \n' }, 1.5]]).counter('c_total', 'c', 3).gauge('empty', 'no samples', undefined);
  assert.equal(
    x.text(),
    [
      '# HELP t_g a \\\\ back\\nslash',
      '# TYPE t_g gauge',
      't_g{name="quote \\" back \\\\ nl \\n"} 1.5',
      '# HELP t_c_total c',
      '# TYPE t_c_total counter',
      't_c_total 3',
      '# HELP t_empty no samples',
      '# TYPE t_empty gauge',
      '',
    ].join('\n'),
  );
  assert.throws(() => new Exposition('t_').counter('c', 'c', 1), /must end in _total/);
  assert.throws(() => new Exposition('t_').gauge('g', 'g', 1).gauge('g', 'g', 2), /declared twice/);
});

test('a switch report: per-port samples by name and direction; duplicate names stay distinct', () => {
  const counters = (rx: number) => ({ rxFrames: rx, rxBytes: rx * 100, txFrames: 1, txBytes: 100, flooded: 0, txErrors: 0, drops: { runt: 1, oversize: 0, badSource: 0, samePort: 0, reentrant: 0, vlan: 0, storm: 4, blocked: 0 } });
  const r: SwitchStatusReport = {
    kind: 'vswitch', time: new Date().toISOString(), pid: 1, mode: 'secure', cipher: 'chacha20-poly1305', publicKey: 'S=', udpPorts: [9999], tcpPorts: [9999], streams: { open: 1, accepted: 2, refused: 3 },
    ports: [
      { id: 1, name: 'a"b', network: 'red', vlan: 'transparent', address: '10.0.0.1:1', publicKey: 'K=', linkUp: true, counters: counters(5), macs: [] },
      { id: 2, name: 'dup', network: 'blue', vlan: 'access 10', blocked: { reason: 'a loop', remainingS: 5 }, address: '10.0.0.2:1', linkUp: false, counters: counters(6), macs: [] },
      { id: 3, name: 'dup', network: 'blue', vlan: 'transparent', address: '10.0.0.3:1', linkUp: true, counters: counters(7), macs: [] },
    ],
    networks: ['red', 'blue'].map((name, i) => ({
      name, admitted: 2 + i, members: 1 + i, ports: 1 + i, macs: 0, blocked: [],
      limits: { maxMacs: 65536, maxMacsPerPort: 64, stormLimit: 1000 },
      macTableCounters: { learned: 0, moves: 0, moveDenied: 0, staticConflicts: 0, tableFull: 0, portLimit: 0, aged: 0 },
      totals: counters(10 * (i + 1)),
    })),
    pairs: [], reflectorPort: 0,
    macTable: [], macTableCounters: { learned: 0, moves: 0, moveDenied: 0, staticConflicts: 0, tableFull: 0, portLimit: 0, aged: 0 },
    totals: counters(18), protocol: { handshakes: 3, unlisted: 2 }, udp: [],
  };
  const text = renderSwitchMetrics(r);
  assert.match(text, /^etherlink_switch_port_bytes_total\{network="red",port="a\\"b",direction="rx"\} 500$/m);
  assert.match(text, /^etherlink_switch_port_bytes_total\{network="blue",port="dup#2",direction="rx"\} 600$/m);
  assert.match(text, /^etherlink_switch_port_link_up\{network="blue",port="dup#2"\} 0$/m);
  assert.match(text, /^etherlink_switch_port_bytes_total\{network="blue",port="dup#3",direction="rx"\} 700$/m);
  assert.match(text, /^etherlink_switch_port_blocked\{network="blue",port="dup#2"\} 1$/m);
  assert.match(text, /^etherlink_switch_port_blocked\{network="blue",port="dup#3"\} 0$/m);
  assert.match(text, /^etherlink_switch_port_drops_total\{network="red",port="a\\"b",reason="storm"\} 4$/m);
  assert.match(text, /^etherlink_switch_network_members\{network="blue"\} 2$/m);
  assert.match(text, /^etherlink_switch_network_frames_total\{network="blue",direction="rx"\} 20$/m);
  assert.match(text, /^etherlink_switch_handshake_failures_total\{reason="unlisted_key"\} 2$/m);
  assert.match(text, /^etherlink_switch_drops_total\{reason="runt"\} 1$/m);
  assert.match(text, /^etherlink_switch_ports 3$/m);
});

test('--metrics takes ADDR:PORT or [v6]:PORT', () => {
  assert.deepEqual(parseMetricsAddress('127.0.0.1:9810'), { address: '127.0.0.1', port: 9810 });
  assert.deepEqual(parseMetricsAddress('[::1]:9810'), { address: '::1', port: 9810 });
  for (const bad of ['9810', '::1:9810', 'host:', 'h:70000']) assert.throws(() => parseMetricsAddress(bad), /--metrics/);
});
