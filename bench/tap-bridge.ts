// Section "tap": the JS bridge between two TAPs (batch API) in this process,
// against a kernel veth pair, iperf3 TCP 1 stream: the plain batch API and
// the offload mode (TSO super-frames split and coalesced in the addon).
import { Netns, run } from '../lab/netns.js';
import { TapDevice } from '../lib/io/tap.js';
import { config } from './config.js';
import { iperfTcp, median } from './measure.js';
import { fmt, markdownTable } from './report.js';

export interface TapBridgeResult {
  config: { runs: number; tcpSeconds: number };
  veth: { gbps: number; fps: number };
  bridge: { gbps: number; fps: number; framesPerBatch: number };
  ratio: number;
  offload: { gbps: number; fps: number; framesPerBatch: number };
  offloadRatio: number;
}

function rxPackets(ns: Netns, dev: string): number {
  const j = JSON.parse(ns.ip('-s', '-j', 'link', 'show', dev).stdout) as { stats64: { rx: { packets: number } } }[];
  return j[0]!.stats64.rx.packets;
}

async function benchVeth(tag: string): Promise<{ gbps: number; fps: number }> {
  const a = Netns.create('va', tag);
  const b = Netns.create('vb', tag);
  try {
    a.ip('link', 'add', 'vea', 'type', 'veth', 'peer', 'name', 'veb', 'netns', b.name);
    a.ip('addr', 'add', '10.210.0.1/24', 'dev', 'vea');
    b.ip('addr', 'add', '10.210.0.2/24', 'dev', 'veb');
    a.ip('link', 'set', 'vea', 'up');
    b.ip('link', 'set', 'veb', 'up');
    const gbps: number[] = [];
    const fps: number[] = [];
    for (let i = 0; i < config.runs; i++) {
      const p0 = rxPackets(b, 'veb');
      const t0 = Date.now();
      gbps.push((await iperfTcp(a, b, '10.210.0.2', config.tcpSeconds, 1)).gbps);
      fps.push((rxPackets(b, 'veb') - p0) / ((Date.now() - t0) / 1000));
    }
    return { gbps: median(gbps), fps: median(fps) };
  } finally {
    a.delete();
    b.delete();
  }
}

async function benchBridge(tag: string, offload: boolean): Promise<{ gbps: number; fps: number; framesPerBatch: number }> {
  const a = Netns.create(offload ? 'toa' : 'ta', tag);
  const b = Netns.create(offload ? 'tob' : 'tb', tag);
  const ta = TapDevice.open({ name: `${offload ? 'bo' : 'bt'}a${tag}`.slice(0, 15), offload });
  const tb = TapDevice.open({ name: `${offload ? 'bo' : 'bt'}b${tag}`.slice(0, 15), offload });
  try {
    for (const [tap, ns, ip] of [
      [ta, a, '10.211.0.1/24'],
      [tb, b, '10.211.0.2/24'],
    ] as const) {
      run('ip', ['link', 'set', 'dev', tap.name, 'netns', ns.name]);
      ns.ip('addr', 'add', ip, 'dev', tap.name);
      ns.ip('link', 'set', tap.name, 'up');
    }
    ta.setReceiver((batch) => tb.write(batch));
    tb.setReceiver((batch) => ta.write(batch));
    const gbps: number[] = [];
    const fps: number[] = [];
    const s0 = ta.stats;
    for (let i = 0; i < config.runs; i++) {
      const f0 = ta.stats.rxFrames + tb.stats.rxFrames;
      const t0 = Date.now();
      gbps.push((await iperfTcp(a, b, '10.211.0.2', config.tcpSeconds, 1)).gbps);
      fps.push((ta.stats.rxFrames + tb.stats.rxFrames - f0) / ((Date.now() - t0) / 1000));
    }
    const s1 = ta.stats;
    return { gbps: median(gbps), fps: median(fps), framesPerBatch: (s1.rxFrames - s0.rxFrames) / Math.max(1, s1.rxBatches - s0.rxBatches) };
  } finally {
    ta.close();
    tb.close();
    a.delete();
    b.delete();
  }
}

export async function runTapBridge(tag: string): Promise<TapBridgeResult> {
  console.log(`\n== tap: JS bridge between two TAPs vs a veth pair, iperf3 TCP 1 stream, ${config.tcpSeconds} s, median of ${config.runs}`);
  const veth = await benchVeth(tag);
  const bridge = await benchBridge(tag, false);
  const offload = await benchBridge(tag, true);
  return { config: { runs: config.runs, tcpSeconds: config.tcpSeconds }, veth, bridge, ratio: bridge.gbps / veth.gbps, offload, offloadRatio: offload.gbps / veth.gbps };
}

export function tapBridgeTable(r: TapBridgeResult): string {
  return (
    markdownTable(
      ['path', 'Gbit/s', 'frames/s', 'ratio to veth'],
      [
        ['kernel veth pair', fmt(r.veth.gbps), fmt(r.veth.fps, 0), '1.000'],
        ['JS bridge, 2 TAPs (batch API)', fmt(r.bridge.gbps), fmt(r.bridge.fps, 0), fmt(r.ratio, 3)],
        ['JS bridge, 2 TAPs, offload (TSO split/coalesce)', fmt(r.offload.gbps), fmt(r.offload.fps, 0), fmt(r.offloadRatio, 3)],
      ],
    ) +
    `\n\nbridge: ${r.bridge.framesPerBatch.toFixed(1)} frames per batch on average (${r.offload.framesPerBatch.toFixed(1)} with offload; frames/s counts wire-sized frames after the split)`
  );
}
