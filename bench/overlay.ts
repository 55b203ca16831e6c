// Section "overlay": host 1 -> host 2, EtherLink (vswitch + two vports)
// against the kernel, on the same veth underlay in the same run, in two
// topologies. "relay": the hosts reach only the switch namespace, so EtherLink
// relays through the vswitch and the kernel baseline is a bridge joining one
// VXLAN tunnel per host there. "direct": the switch namespace also routes
// between the hosts, so the vports take a direct path and the baseline is one
// VXLAN tunnel from host to host.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { buildStar, collect, waitExit, waitForOutput, type Netns, type StarHost } from '../lab/netns.js';
import { config } from './config.js';
import { iperfTcp, iperfUdp, median, ping, topSnapshot, waitReachable, type PingResult, type TcpResult, type UdpResult } from './measure.js';
import { selectModes, type EtherlinkMode } from './modes.js';
import { cpuSeconds, cpuTimes, machineCpu, statusBytes, verifyNodePid } from './proc.js';
import { fmt, markdownTable, ratio } from './report.js';
import { runWakeup, type WakeupResult } from './wakeup.js';

const HOSTS = 2;
const VXLAN_PORT = 4789;
const VXLAN_MTU = 1450;
const here = join(fileURLToPath(import.meta.url), '..');
const cli = (name: string): string => join(here, '..', 'bin', `${name}.js`);
const vxlanIp = (i: number): string => `10.98.0.${i}`;
const etlIp = (i: number): string => `10.99.0.${i}`;
const STOP_TIMEOUT_MS = 10_000;
/** Let queues drain between tests so one test's tail doesn't land in the next. */
const SETTLE_MS = 500;

/** A process whose CPU and memory the bench accounts for. */
interface Measured {
  role: string;
  pid: number;
}

export interface ProcessFigures {
  /** CPU-seconds (utime+stime) per GB received during the 1-stream TCP test. */
  cpuSPerGB: number;
  /** CPU % of one core during the 1-stream TCP test and the UDP flood. */
  cpuPctTcp1: number;
  cpuPctUdp: number;
  /** Share of that CPU spent in the kernel (stime), 1-stream TCP: syscalls on the TAP and the UDP socket. */
  sysShareTcp1: number;
}

export interface RunFigures {
  ping: PingResult;
  tcp1: TcpResult;
  tcp4: TcpResult;
  udp: UdpResult;
  /** Busy CPU-seconds of the whole machine (all processes and the kernel, iperf3 included) per GB, 1-stream TCP. */
  machineCpuSPerGB: number;
  processes: Record<string, ProcessFigures>;
  /** `top` in the middle of the 1-stream TCP test (first run only). */
  top?: string;
}

export interface Figures {
  tcp1Gbps: number;
  tcp4Gbps: number;
  pingMinMs: number;
  pingAvgMs: number;
  pingP99Ms: number;
  udpKpps: number;
  udpLossPercent: number;
  machineCpuSPerGB: number;
  processes: Record<string, ProcessFigures & { peakRssMB: number }>;
}

export type CaseResult =
  | { name: string; describe: string; ok: true; mtu: number; runs: RunFigures[]; median: Figures }
  | { name: string; describe: string; ok: false; error: string };

export interface OverlayResult {
  config: { runs: number; tcpSeconds: number; udpSeconds: number; udpPayload: number; pingCount: number; pingIntervalS: number };
  kernel: CaseResult;
  modes: CaseResult[];
  /** The direct topology: kernel VXLAN host to host, and EtherLink encrypted on its direct path. */
  direct?: { kernel: CaseResult; modes: CaseResult[] } | { error: string };
  /** The latency floor of one userspace hop here (bench/wakeup.ts), or the error. */
  wakeup?: WakeupResult | { error: string };
}

/**
 * The kernel baseline: in host i, vx0 to the switch namespace; there, one VXLAN
 * device per host, all in one bridge. Tunnel i uses VNI 41+i (42, 43): the kernel
 * refuses two VXLAN devices with the same VNI and UDP port in one namespace
 * (EEXIST), and the VNI's value costs nothing.
 */
function buildVxlan(sw: Netns, hosts: readonly StarHost[]): void {
  sw.ip('link', 'add', 'br0', 'type', 'bridge');
  for (const [k, h] of hosts.entries()) {
    const i = k + 1;
    const vni = String(41 + i);
    h.ns.ip('link', 'add', 'vx0', 'type', 'vxlan', 'id', vni, 'local', h.underlay, 'remote', h.switchAddress, 'dstport', String(VXLAN_PORT));
    h.ns.ip('link', 'set', 'vx0', 'mtu', String(VXLAN_MTU), 'up');
    h.ns.ip('addr', 'add', `${vxlanIp(i)}/24`, 'dev', 'vx0');
    sw.ip('link', 'add', `vx${i}`, 'type', 'vxlan', 'id', vni, 'local', h.switchAddress, 'remote', h.underlay, 'dstport', String(VXLAN_PORT));
    sw.ip('link', 'set', `vx${i}`, 'mtu', String(VXLAN_MTU), 'master', 'br0', 'up');
  }
  sw.ip('link', 'set', 'br0', 'up');
}

const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function cpuOf(procs: readonly Measured[]): Map<string, number> {
  return new Map(procs.map((p) => [p.role, cpuSeconds(p.pid) ?? NaN]));
}

async function oneRun(client: Netns, server: Netns, serverIp: string, procs: readonly Measured[], withTop: boolean): Promise<RunFigures> {
  const processes: Record<string, ProcessFigures> = {};
  for (const p of procs) processes[p.role] = { cpuSPerGB: NaN, cpuPctTcp1: NaN, cpuPctUdp: NaN, sysShareTcp1: NaN };

  const pingR = await ping(client, serverIp, config.pingCount, config.pingIntervalS);
  await pause(SETTLE_MS);

  let cpu0 = cpuOf(procs);
  const split0 = procs.map((p) => cpuTimes(p.pid));
  const m0 = machineCpu();
  let t0 = Date.now();
  const top = withTop ? topSnapshot((config.tcpSeconds * 1000) / 2 - 500) : undefined;
  const tcp1 = await iperfTcp(client, server, serverIp, config.tcpSeconds, 1);
  const topText = await top;
  let wallS = (Date.now() - t0) / 1000;
  const m1 = machineCpu();
  let cpu1 = cpuOf(procs);
  const split1 = procs.map((p) => cpuTimes(p.pid));
  const gb = tcp1.bytes / 1e9;
  for (const [i, p] of procs.entries()) {
    const a = split0[i];
    const b = split1[i];
    if (a && b) processes[p.role]!.sysShareTcp1 = (b.sys - a.sys) / (b.sys - a.sys + b.user - a.user);
    const d = cpu1.get(p.role)! - cpu0.get(p.role)!;
    processes[p.role]!.cpuSPerGB = d / gb;
    processes[p.role]!.cpuPctTcp1 = (d / wallS) * 100;
  }
  await pause(SETTLE_MS);

  const tcp4 = await iperfTcp(client, server, serverIp, config.tcpSeconds, 4);
  await pause(SETTLE_MS);

  cpu0 = cpuOf(procs);
  t0 = Date.now();
  const udp = await iperfUdp(client, server, serverIp, config.udpSeconds, config.udpPayload);
  wallS = (Date.now() - t0) / 1000;
  cpu1 = cpuOf(procs);
  for (const p of procs) processes[p.role]!.cpuPctUdp = ((cpu1.get(p.role)! - cpu0.get(p.role)!) / wallS) * 100;
  await pause(SETTLE_MS);

  return { ping: pingR, tcp1, tcp4, udp, machineCpuSPerGB: (m1.busy - m0.busy) / gb, processes, ...(topText !== undefined ? { top: topText } : {}) };
}

async function measureCase(name: string, client: Netns, server: Netns, serverIp: string, procs: readonly Measured[]): Promise<{ runs: RunFigures[]; median: Figures }> {
  const runs: RunFigures[] = [];
  for (let r = 0; r < config.runs; r++) {
    const f = await oneRun(client, server, serverIp, procs, r === 0);
    runs.push(f);
    const cpu = procs.map((p) => `${p.role} ${fmt(f.processes[p.role]!.cpuPctTcp1, 0)}%`).join(', ');
    console.log(
      `  ${name} run ${r + 1}/${config.runs}: tcp1 ${fmt(f.tcp1.gbps)} Gbit/s, tcp4 ${fmt(f.tcp4.gbps)} Gbit/s, ` +
        `ping avg ${fmt(f.ping.avgMs, 3)} ms, udp ${fmt(f.udp.pps / 1000, 1)} kpps (${fmt(f.udp.lossPercent, 1)}% lost)${cpu ? `; CPU during tcp1: ${cpu}` : ''}`,
    );
    if (f.top !== undefined) console.log(`  top during ${name} tcp1:\n${f.top.replace(/^/gm, '    ')}`);
  }
  const med = (pick: (f: RunFigures) => number): number => median(runs.map(pick));
  const processes: Figures['processes'] = {};
  for (const p of procs) {
    processes[p.role] = {
      cpuSPerGB: med((f) => f.processes[p.role]!.cpuSPerGB),
      cpuPctTcp1: med((f) => f.processes[p.role]!.cpuPctTcp1),
      cpuPctUdp: med((f) => f.processes[p.role]!.cpuPctUdp),
      sysShareTcp1: med((f) => f.processes[p.role]!.sysShareTcp1),
      peakRssMB: (statusBytes(p.pid, 'VmHWM') ?? NaN) / 2 ** 20,
    };
  }
  return {
    runs,
    median: {
      tcp1Gbps: med((f) => f.tcp1.gbps),
      tcp4Gbps: med((f) => f.tcp4.gbps),
      pingMinMs: med((f) => f.ping.minMs),
      pingAvgMs: med((f) => f.ping.avgMs),
      pingP99Ms: med((f) => f.ping.p99Ms),
      udpKpps: med((f) => f.udp.pps / 1000),
      udpLossPercent: med((f) => f.udp.lossPercent),
      machineCpuSPerGB: med((f) => f.machineCpuSPerGB),
      processes,
    },
  };
}

/** Stop with SIGTERM (ports say goodbye), SIGKILL if that hangs. */
async function stop(children: readonly ChildProcess[]): Promise<void> {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  for (const c of children) await waitExit(c, STOP_TIMEOUT_MS).catch(() => undefined);
}

/**
 * Remove the kernel baseline before EtherLink is measured on the same
 * namespaces: its tunnel would otherwise be a path the vports could take
 * (a host's vx0 address is one of its addresses).
 */
function removeVxlan(sw: Netns, hosts: readonly StarHost[]): void {
  for (const h of hosts) h.ns.ip('link', 'del', 'vx0');
  for (const dev of ['br0', ...hosts.map((_, k) => `vx${k + 1}`)]) sw.exec('ip', ['link', 'del', dev], { allowFail: true });
}

/** The direct topology's baseline: one VXLAN tunnel from host to host, routed by the switch namespace. */
function buildDirectVxlan(hosts: readonly StarHost[]): void {
  const [a, b] = hosts as [StarHost, StarHost];
  for (const [i, h, other] of [
    [1, a, b],
    [2, b, a],
  ] as const) {
    h.ns.ip('link', 'add', 'vx0', 'type', 'vxlan', 'id', '42', 'local', h.underlay, 'remote', other.underlay, 'dstport', String(VXLAN_PORT));
    h.ns.ip('link', 'set', 'vx0', 'mtu', String(VXLAN_MTU), 'up');
    h.ns.ip('addr', 'add', `${vxlanIp(i)}/24`, 'dev', 'vx0');
  }
}

/** The switch namespace routes between the hosts: they reach each other, not only the switch. */
function routeBetweenHosts(sw: Netns, hosts: readonly StarHost[]): void {
  sw.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  for (const h of hosts) h.ns.ip('route', 'add', 'default', 'via', h.switchAddress);
}

/** Until vport `p` logs that its path to `peer` is direct (the direct topology measures nothing else). */
async function waitDirect(p: ChildProcess, peer: string, from: Netns, to: string): Promise<void> {
  const re = new RegExp(`path changed peer=${peer} path=direct`);
  const deadline = Date.now() + 15_000;
  while (!re.test(collect(p).err() + collect(p).out())) {
    if (Date.now() > deadline) throw new Error(`vport never logged a direct path to ${peer}`);
    from.exec('ping', ['-c', '1', '-W', '1', to], { allowFail: true });
    await pause(200);
  }
}

/** vswitch in the switch namespace, a vport per host; resolves once host 1 can ping host 2 (and, `direct`, both vports took the direct path). */
async function startEtherlink(mode: EtherlinkMode, sw: Netns, hosts: readonly StarHost[], dir: string, children: ChildProcess[], direct = false): Promise<Measured[]> {
  const args = await mode.setup({ dir, hosts: hosts.length });
  const vswitch = sw.spawn(process.execPath, [cli('vswitch'), String(config.switchPort), '--log-level', 'warn', ...args.switch]);
  children.push(vswitch);
  await waitForOutput(vswitch, /vswitch ready on UDP/, 10_000).catch((e: Error) => {
    throw new Error(`vswitch did not start: ${e.message}`);
  });
  verifyNodePid(vswitch.pid!, 'vswitch.js');
  const procs: Measured[] = [{ role: 'vswitch', pid: vswitch.pid! }];
  for (const [k, h] of hosts.entries()) {
    const i = k + 1;
    const p = h.ns.spawn(process.execPath, [
      cli('vport'), h.switchAddress, String(config.switchPort),
      '--name', 'etl0', '--ip', `${etlIp(i)}/24`, '--port-name', `h${i}`, '--log-level', direct ? 'info' : 'warn', ...args.port(i),
    ]);
    children.push(p);
    await waitForOutput(p, /vport etl0 joined/, 15_000).catch((e: Error) => {
      throw new Error(`vport h${i} did not join: ${e.message}`);
    });
    verifyNodePid(p.pid!, 'vport.js');
    procs.push({ role: `vport h${i}`, pid: p.pid! });
  }
  await waitReachable(hosts[0]!.ns, etlIp(2));
  if (direct) {
    const [p1, p2] = children.slice(-2) as [ChildProcess, ChildProcess];
    await waitDirect(p1, 'h2', hosts[0]!.ns, etlIp(2));
    await waitDirect(p2, 'h1', hosts[1]!.ns, etlIp(1));
  }
  return procs;
}

/** The direct topology: kernel VXLAN host to host, then EtherLink encrypted, in a star whose centre routes. */
async function runDirect(tag: string, dir: string): Promise<{ kernel: CaseResult; modes: CaseResult[] }> {
  const { sw, hosts } = buildStar(`d${tag}`, HOSTS);
  const [h1, h2] = hosts as [StarHost, StarHost];
  try {
    routeBetweenHosts(sw, hosts);
    console.log(`\n== overlay, direct: host 1 -> host 2, the switch namespace routes between them; ${config.runs} run(s) per figure, median`);
    let kernel: CaseResult;
    const kdesc = `one VXLAN tunnel host to host, MTU ${VXLAN_MTU}`;
    try {
      buildDirectVxlan(hosts);
      await waitReachable(h1.ns, vxlanIp(2));
      kernel = { name: 'kernel VXLAN', describe: kdesc, ok: true, mtu: VXLAN_MTU, ...(await measureCase('kernel VXLAN direct', h1.ns, h2.ns, vxlanIp(2), [])) };
    } catch (err) {
      kernel = { name: 'kernel VXLAN', describe: kdesc, ok: false, error: (err as Error).message };
      console.log(`  kernel VXLAN direct FAILED: ${(err as Error).message}`);
    }
    for (const h of hosts) h.ns.exec('ip', ['link', 'del', 'vx0'], { allowFail: true });
    const results: CaseResult[] = [];
    for (const mode of selectModes(['encrypted'])) {
      const children: ChildProcess[] = [];
      const mdir = mkdtempSync(join(dir, `direct-${mode.name}-`));
      try {
        const procs = await startEtherlink(mode, sw, hosts, mdir, children, true);
        const mtu = Number(h1.ns.ip('-j', 'link', 'show', 'etl0').stdout.match(/"mtu":(\d+)/)?.[1] ?? NaN);
        console.log(`  EtherLink ${mode.name} direct: both vports logged a direct path; etl0 MTU ${mtu}`);
        results.push({ name: mode.name, describe: `${mode.describe}, direct path`, ok: true, mtu, ...(await measureCase(`${mode.name} direct`, h1.ns, h2.ns, etlIp(2), procs)) });
      } catch (err) {
        const out = children.map((c) => collect(c).err().trim()).filter(Boolean).join('\n').slice(-1000);
        results.push({ name: mode.name, describe: mode.describe, ok: false, error: `${(err as Error).message}\n${out}` });
        console.log(`  EtherLink ${mode.name} direct FAILED: ${(err as Error).message}`);
      } finally {
        await stop(children);
      }
    }
    return { kernel, modes: results };
  } finally {
    for (const ns of [sw, ...hosts.map((h) => h.ns)]) ns.delete();
  }
}

export async function runOverlay(tag: string): Promise<OverlayResult> {
  const modes = selectModes(config.modes);
  const dir = mkdtempSync(join(tmpdir(), 'etherlink-bench-'));
  const { sw, hosts } = buildStar(tag, HOSTS);
  const [h1, h2] = hosts as [StarHost, StarHost];
  try {
    console.log(`\n== overlay: host 1 -> host 2 through the switch namespace (veths MTU 1500); ${config.runs} run(s) per figure, median`);
    let kernel: CaseResult;
    const kdesc = `Linux bridge + one VXLAN tunnel per host, MTU ${VXLAN_MTU}`;
    try {
      buildVxlan(sw, hosts);
      await waitReachable(h1.ns, vxlanIp(2));
      console.log(`  kernel VXLAN: ${h1.ns.name} pings ${vxlanIp(2)} over the bridge`);
      kernel = { name: 'kernel VXLAN', describe: kdesc, ok: true, mtu: VXLAN_MTU, ...(await measureCase('kernel VXLAN', h1.ns, h2.ns, vxlanIp(2), [])) };
    } catch (err) {
      kernel = { name: 'kernel VXLAN', describe: kdesc, ok: false, error: (err as Error).message };
      console.log(`  kernel VXLAN FAILED: ${(err as Error).message}`);
    }
    removeVxlan(sw, hosts);

    const results: CaseResult[] = [];
    for (const mode of modes) {
      const children: ChildProcess[] = [];
      const mdir = mkdtempSync(join(dir, `${mode.name}-`));
      try {
        const procs = await startEtherlink(mode, sw, hosts, mdir, children);
        const mtu = Number(h1.ns.ip('-j', 'link', 'show', 'etl0').stdout.match(/"mtu":(\d+)/)?.[1] ?? NaN);
        console.log(`  EtherLink ${mode.name}: vswitch pid ${procs[0]!.pid}, vports ${procs.slice(1).map((p) => p.pid).join(', ')}, etl0 MTU ${mtu}; ${h1.ns.name} pings ${etlIp(2)}`);
        results.push({ name: mode.name, describe: mode.describe, ok: true, mtu, ...(await measureCase(mode.name, h1.ns, h2.ns, etlIp(2), procs)) });
      } catch (err) {
        const out = children.map((c) => collect(c).err().trim()).filter(Boolean).join('\n').slice(-1000);
        const error = `${(err as Error).message}${out && !(err as Error).message.includes(out) ? `\n${out}` : ''}`;
        results.push({ name: mode.name, describe: mode.describe, ok: false, error });
        console.log(`  EtherLink ${mode.name} FAILED (the other modes go on): ${error}`);
      } finally {
        await stop(children);
      }
    }
    let direct: OverlayResult['direct'];
    try {
      direct = await runDirect(tag, dir);
    } catch (err) {
      direct = { error: (err as Error).message };
    }
    let wakeup: WakeupResult | { error: string };
    try {
      wakeup = await runWakeup();
    } catch (err) {
      wakeup = { error: (err as Error).message };
    }
    return {
      config: { runs: config.runs, tcpSeconds: config.tcpSeconds, udpSeconds: config.udpSeconds, udpPayload: config.udpPayload, pingCount: config.pingCount, pingIntervalS: config.pingIntervalS },
      kernel,
      modes: results,
      direct,
      wakeup,
    };
  } finally {
    for (const ns of [sw, ...hosts.map((h) => h.ns)]) ns.delete();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Markdown: the relay topology, then the direct one, each with its targets. */
export function overlayTable(r: OverlayResult): string {
  const parts = [`relay topology (the hosts reach only the switch namespace)\n\n${topologyTable(r, r.kernel, r.modes)}`];
  const d = r.direct;
  if (d !== undefined) {
    if ('error' in d) parts.push(`direct topology FAILED: ${d.error}`);
    else parts.push(`direct topology (the switch namespace routes between the hosts; kernel VXLAN host to host)\n\n${topologyTable(r, d.kernel, d.modes)}${directTargets(d.kernel, d.modes)}`);
  }
  return parts.join('\n\n');
}

/** Issue 11's targets for the direct topology. */
function directTargets(kernel: CaseResult, modes: readonly CaseResult[]): string {
  const enc = modes.find((m) => m.name === 'encrypted');
  if (!kernel.ok || enc === undefined || !enc.ok) return '';
  const check = (ok: boolean): string => (ok ? 'met' : 'MISSED');
  const tcp = ratio(enc.median.tcp1Gbps, kernel.median.tcp1Gbps);
  const ping = ratio(enc.median.pingAvgMs, kernel.median.pingAvgMs);
  return (
    `\ndirect targets: encrypted TCP 1 stream / kernel ${fmt(tcp, 3)} (>= 0.5: ${check(tcp !== undefined && tcp >= 0.5)}); ` +
    `ping avg / kernel ${fmt(ping, 2)}x (<= 2: ${check(ping !== undefined && ping <= 2)}); vswitch CPU-s per GB ${fmt(enc.median.processes['vswitch']?.cpuSPerGB, 3)} (the data bypasses it)`
  );
}

/** Markdown: one column per case, and each EtherLink mode's ratio to kernel VXLAN. */
function topologyTable(r: OverlayResult, kernel: CaseResult, modes: readonly CaseResult[]): string {
  const k = kernel.ok ? kernel.median : undefined;
  const head = ['figure (host 1 -> host 2)', `kernel VXLAN (MTU ${kernel.ok ? kernel.mtu : '?'})`];
  for (const m of modes) head.push(`EtherLink ${m.name}${m.ok ? ` (MTU ${m.mtu})` : ''}`, `${m.name} / kernel`);
  const rows: string[][] = [];
  type Pick = (f: Figures) => number | undefined;
  const row = (label: string, pick: Pick, decimals: number, withRatio = true): void => {
    const cells = [label, fmt(k ? pick(k) : undefined, decimals)];
    for (const m of modes) {
      const v = m.ok ? pick(m.median) : undefined;
      cells.push(m.ok ? fmt(v, decimals) : 'failed', withRatio ? fmt(ratio(v, k ? pick(k) : undefined), 3) : '—');
    }
    rows.push(cells);
  };
  const t = r.config;
  row(`TCP, 1 stream, ${t.tcpSeconds} s (Gbit/s)`, (f) => f.tcp1Gbps, 2);
  row(`TCP, 4 streams, ${t.tcpSeconds} s (Gbit/s)`, (f) => f.tcp4Gbps, 2);
  row(`ping min, ${t.pingCount} x ${t.pingIntervalS * 1000} ms (ms)`, (f) => f.pingMinMs, 3);
  row('ping avg (ms)', (f) => f.pingAvgMs, 3);
  row('ping p99 (ms)', (f) => f.pingP99Ms, 3);
  row(`UDP ${t.udpPayload} B, -b 0, ${t.udpSeconds} s: received (kpps)`, (f) => f.udpKpps, 1);
  // No ratio: a ratio of loss percentages (25000x a kernel's 0.002 %) means nothing.
  row('UDP: loss (%)', (f) => f.udpLossPercent, 1, false);
  row('machine busy CPU-s per GB, TCP 1 stream', (f) => f.machineCpuSPerGB, 2);
  const roles = ['vswitch', 'vport h1', 'vport h2'];
  for (const role of roles) row(`${role} CPU-s per GB, TCP 1 stream`, (f) => f.processes[role]?.cpuSPerGB, 2, false);
  row('EtherLink processes CPU-s per GB (sum)', (f) => (f.processes.vswitch ? roles.reduce((s, x) => s + (f.processes[x]?.cpuSPerGB ?? 0), 0) : undefined), 2, false);
  for (const role of roles) row(`${role} CPU % during TCP 1 stream`, (f) => f.processes[role]?.cpuPctTcp1, 0, false);
  for (const role of roles) row(`${role} kernel (sys) share of its CPU, TCP 1 stream (%)`, (f) => (f.processes[role] ? f.processes[role]!.sysShareTcp1 * 100 : undefined), 0, false);
  for (const role of roles) row(`${role} CPU % during UDP flood`, (f) => f.processes[role]?.cpuPctUdp, 0, false);
  for (const role of roles) row(`${role} peak RSS (MB)`, (f) => f.processes[role]?.peakRssMB, 1, false);
  const notes = modes.filter((m) => !m.ok).map((m) => `\nmode ${m.name} failed: ${(m as { error: string }).error}`);
  // The end-to-end issue's targets, checked against the same run.
  const enc = modes.find((m) => m.name === 'encrypted' && m.ok);
  const plain = modes.find((m) => m.name === 'plaintext' && m.ok);
  if (enc?.ok && plain?.ok) {
    const r1 = ratio(enc.median.tcp1Gbps, plain.median.tcp1Gbps);
    const r4 = ratio(enc.median.tcp4Gbps, plain.median.tcp4Gbps);
    notes.push(`\nencrypted / plaintext, same run: TCP 1 stream ${fmt(r1, 3)}, TCP 4 streams ${fmt(r4, 3)} (target >= 0.85)`);
  }
  // The stream transport's targets (issue 12): TCP-in-TCP against the UDP transport of the same run.
  const overTcp = modes.find((m) => m.name === 'encrypted-tcp' && m.ok);
  if (enc?.ok && overTcp?.ok) {
    notes.push(
      `\nover TCP / over UDP (encrypted), same run: TCP 1 stream ${fmt(ratio(overTcp.median.tcp1Gbps, enc.median.tcp1Gbps), 3)}, TCP 4 streams ${fmt(ratio(overTcp.median.tcp4Gbps, enc.median.tcp4Gbps), 3)} (target >= 0.5); ` +
        `ping avg ${fmt(ratio(overTcp.median.pingAvgMs, enc.median.pingAvgMs), 2)}x (target <= 2x)`,
    );
  }
  if (enc?.ok && kernel.ok && modes === r.modes) {
    const k = kernel.median;
    const e = enc.median;
    const all = roles.reduce((sum, x) => sum + (e.processes[x]?.cpuSPerGB ?? 0), 0);
    const check = (ok: boolean): string => (ok ? 'met' : 'MISSED');
    const tcp = ratio(e.tcp1Gbps, k.tcp1Gbps);
    const ping = ratio(e.pingAvgMs, k.pingAvgMs);
    const sw = e.processes['vswitch']?.cpuSPerGB;
    notes.push(
      `\nencrypted targets: TCP 1 stream / kernel ${fmt(tcp, 3)} (>= 0.35: ${check(tcp !== undefined && tcp >= 0.35)}); ` +
        `vswitch CPU-s per GB ${fmt(sw, 2)} (<= 0.5: ${check(sw !== undefined && sw <= 0.5)}); ` +
        `all EtherLink CPU-s per GB ${fmt(all, 2)} (<= 3: ${check(all <= 3)}); ` +
        `ping avg / kernel ${fmt(ping, 2)}x (<= 4: ${check(ping !== undefined && ping <= 4)})`,
    );
  }
  if (r.wakeup !== undefined && modes === r.modes) {
    const w = r.wakeup;
    notes.push(
      'error' in w
        ? `\nwake-up floor: ${w.error}`
        : `\nwake-up floor (bench/wakeup.ts): two Node processes, UDP ping-pong on loopback every 10 ms: RTT min ${fmt(w.minUs / 1000, 3)} ms, median ${fmt(w.medianUs / 1000, 3)} ms, avg ${fmt(w.avgUs / 1000, 3)} ms — 2 process wake-ups; an EtherLink ping crosses 6, kernel VXLAN none`,
    );
  }
  if (!kernel.ok) notes.push(`\nkernel VXLAN failed: ${kernel.error}`);
  return markdownTable(head, rows) + notes.join('');
}

