// npm run bench: throughput of the JS bridge between two TAPs (batch API)
// against a kernel veth pair, measured in the same run with iperf3.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TapDevice } from '../lib/tap.js';

const IPERF_SECONDS = 10;
const RUNS = 3;
const root = join(fileURLToPath(import.meta.url), '..', '..', '..');
const tag = `${process.pid.toString(36)}${Date.now().toString(36).slice(-3)}`;
const namespaces: string[] = [];

function sh(cmd: string, args: string[], allowFail = false): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0 && !allowFail) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

function ensureIperf(): void {
  if (spawnSync('sh', ['-c', 'command -v iperf3']).status === 0) return;
  console.log('installing iperf3 from Debian packages...');
  sh('apt-get', ['update', '-qq'], true);
  sh('apt-get', ['install', '-y', '-qq', 'iperf3']);
}

function netns(name: string): string {
  const full = `etlb-${name}-${tag}`;
  sh('ip', ['netns', 'add', full]);
  namespaces.push(full);
  sh('ip', ['-n', full, 'link', 'set', 'lo', 'up']);
  return full;
}

function cleanup(): void {
  for (const ns of namespaces.splice(0)) spawnSync('ip', ['netns', 'del', ns]);
}

function linkPackets(ns: string, dev: string): number {
  const j = JSON.parse(sh('ip', ['-n', ns, '-s', '-j', 'link', 'show', dev])) as { stats64: { rx: { packets: number } } }[];
  return j[0]!.stats64.rx.packets;
}

/** iperf3 TCP from ns1 to ns2 (async, so this process can keep bridging). */
async function iperf(ns1: string, ns2: string, server: string): Promise<number> {
  const srv = spawn('ip', ['netns', 'exec', ns2, 'iperf3', '-s', '-1', '-B', server], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 300));
  const cli = spawn('ip', ['netns', 'exec', ns1, 'iperf3', '-c', server, '-t', String(IPERF_SECONDS), '-J'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  cli.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const code = await new Promise<number | null>((r) => cli.once('exit', r));
  if (srv.exitCode === null) srv.kill('SIGKILL');
  if (code !== 0) throw new Error(`iperf3 failed: ${out.slice(0, 500)}`);
  const j = JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } };
  return j.end.sum_received.bits_per_second / 1e9;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function benchVeth(): Promise<{ gbps: number; fps: number }> {
  const a = netns('va');
  const b = netns('vb');
  sh('ip', ['link', 'add', `vea${tag}`, 'netns', a, 'type', 'veth', 'peer', 'name', `veb${tag}`, 'netns', b]);
  sh('ip', ['-n', a, 'addr', 'add', '10.210.0.1/24', 'dev', `vea${tag}`]);
  sh('ip', ['-n', b, 'addr', 'add', '10.210.0.2/24', 'dev', `veb${tag}`]);
  sh('ip', ['-n', a, 'link', 'set', `vea${tag}`, 'up']);
  sh('ip', ['-n', b, 'link', 'set', `veb${tag}`, 'up']);
  const gbps: number[] = [];
  const fps: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const p0 = linkPackets(b, `veb${tag}`);
    const t0 = Date.now();
    gbps.push(await iperf(a, b, '10.210.0.2'));
    fps.push((linkPackets(b, `veb${tag}`) - p0) / ((Date.now() - t0) / 1000));
  }
  cleanup();
  return { gbps: median(gbps), fps: median(fps) };
}

async function benchBridge(): Promise<{ gbps: number; fps: number; framesPerBatch: number }> {
  const a = netns('ta');
  const b = netns('tb');
  const ta = TapDevice.open({ name: `bta${tag}` });
  const tb = TapDevice.open({ name: `btb${tag}` });
  try {
    for (const [tap, ns, ip] of [
      [ta, a, '10.211.0.1/24'],
      [tb, b, '10.211.0.2/24'],
    ] as const) {
      sh('ip', ['link', 'set', 'dev', tap.name, 'netns', ns]);
      sh('ip', ['-n', ns, 'addr', 'add', ip, 'dev', tap.name]);
      sh('ip', ['-n', ns, 'link', 'set', tap.name, 'up']);
    }
    ta.setReceiver((batch) => tb.write(batch));
    tb.setReceiver((batch) => ta.write(batch));
    const gbps: number[] = [];
    const fps: number[] = [];
    const s0 = ta.stats;
    for (let i = 0; i < RUNS; i++) {
      const f0 = ta.stats.rxFrames + tb.stats.rxFrames;
      const t0 = Date.now();
      gbps.push(await iperf(a, b, '10.211.0.2'));
      fps.push((ta.stats.rxFrames + tb.stats.rxFrames - f0) / ((Date.now() - t0) / 1000));
    }
    const s1 = ta.stats;
    return { gbps: median(gbps), fps: median(fps), framesPerBatch: (s1.rxFrames - s0.rxFrames) / Math.max(1, s1.rxBatches - s0.rxBatches) };
  } finally {
    ta.close();
    tb.close();
    cleanup();
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.error('bench: needs root (network namespaces and TAP devices): run it as root');
    process.exit(4);
  }
  ensureIperf();
  process.on('exit', cleanup);
  console.log(`iperf3 TCP, ${IPERF_SECONDS} s, median of ${RUNS} runs, 1 stream`);
  const veth = await benchVeth();
  const bridge = await benchBridge();
  const rows = [
    ['kernel veth pair', veth.gbps, veth.fps, 1],
    ['JS bridge, 2 TAPs (batch API)', bridge.gbps, bridge.fps, bridge.gbps / veth.gbps],
  ] as const;
  console.log('\n| path | Gbit/s | frames/s | ratio to veth |\n|---|---:|---:|---:|');
  for (const [name, g, f, r] of rows) console.log(`| ${name} | ${g.toFixed(2)} | ${Math.round(f)} | ${r.toFixed(3)} |`);
  console.log(`\nbridge: ${bridge.framesPerBatch.toFixed(1)} frames per batch on average`);
  const dir = join(root, 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `bench-tap-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), node: process.version, veth, bridge, ratio: bridge.gbps / veth.gbps }, null, 2));
  console.log(`results written to ${file}`);
}

await main();
