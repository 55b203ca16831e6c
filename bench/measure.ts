// Traffic measurements between two namespaces: iperf3 (TCP, UDP) and ping,
// with the parsing kept in pure functions, plus the statistics the bench reports.
import { collect, spawnTracked, waitExit, waitForOutput, type Netns } from '../lab/netns.js';

/** Slack on top of a test's duration before a stuck iperf3/ping is killed. */
const EXIT_GRACE_MS = 30_000;

export const median = (xs: readonly number[]): number => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

/** Nearest-rank percentile (p in 0..100). */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

export interface TcpResult {
  gbps: number;
  bytes: number;
  seconds: number;
}

export interface UdpResult {
  /** Datagrams the server received per second. */
  pps: number;
  lossPercent: number;
  sent: number;
  received: number;
}

export interface PingResult {
  sent: number;
  received: number;
  minMs: number;
  avgMs: number;
  p99Ms: number;
  maxMs: number;
}

interface IperfSum {
  bytes: number;
  seconds: number;
  bits_per_second: number;
  packets?: number;
  lost_packets?: number;
  lost_percent?: number;
}

export function parseIperfTcp(json: string): TcpResult {
  const j = JSON.parse(json) as { error?: string; end: { sum_received: IperfSum } };
  if (j.error) throw new Error(`iperf3: ${j.error}`);
  const r = j.end.sum_received;
  return { gbps: r.bits_per_second / 1e9, bytes: r.bytes, seconds: r.seconds };
}

export function parseIperfUdp(json: string): UdpResult {
  const j = JSON.parse(json) as { error?: string; end: { sum?: IperfSum; sum_received?: IperfSum; sum_sent?: IperfSum } };
  if (j.error) throw new Error(`iperf3: ${j.error}`);
  // iperf3 >= 3.12 has sum_received; there `packets` is the highest sequence seen, so received = packets - lost.
  const r = j.end.sum_received ?? j.end.sum!;
  const sent = j.end.sum_sent?.packets ?? r.packets ?? 0;
  const received = (r.packets ?? 0) - (r.lost_packets ?? 0);
  return { pps: received / r.seconds, lossPercent: r.lost_percent ?? 0, sent, received };
}

/** Parse `ping` output (without -q): every reply's time= and the transmitted count. */
export function parsePing(out: string): PingResult {
  const times = [...out.matchAll(/time[=<]([\d.]+) ms/g)].map((m) => Number(m[1]));
  const sent = Number(/(\d+) packets transmitted/.exec(out)?.[1] ?? NaN);
  if (times.length === 0) throw new Error(`ping: no replies:\n${out.slice(-500)}`);
  return {
    sent,
    received: times.length,
    minMs: Math.min(...times),
    avgMs: times.reduce((a, b) => a + b, 0) / times.length,
    p99Ms: percentile(times, 99),
    maxMs: Math.max(...times),
  };
}

/** One iperf3 test from `client` to `server` (serverIp lives in the server namespace). */
async function iperf3(client: Netns, server: Netns, serverIp: string, seconds: number, extra: string[]): Promise<string> {
  const srv = server.spawn('iperf3', ['-s', '-1', '-B', serverIp, '--forceflush']);
  try {
    await waitForOutput(srv, /Server listening/, 10_000);
    const cli = client.spawn('iperf3', ['-c', serverIp, '-t', String(seconds), '-J', ...extra]);
    const out = collect(cli);
    const code = await waitExit(cli, seconds * 1000 + EXIT_GRACE_MS);
    if (code !== 0) throw new Error(`iperf3 -c ${serverIp} ${extra.join(' ')} exited ${code}: ${out.out().slice(0, 400)}${out.err()}`);
    return out.out();
  } finally {
    if (srv.exitCode === null && srv.signalCode === null) srv.kill('SIGKILL');
  }
}

export async function iperfTcp(client: Netns, server: Netns, serverIp: string, seconds: number, streams: number): Promise<TcpResult> {
  return parseIperfTcp(await iperf3(client, server, serverIp, seconds, streams > 1 ? ['-P', String(streams)] : []));
}

export async function iperfUdp(client: Netns, server: Netns, serverIp: string, seconds: number, payload: number): Promise<UdpResult> {
  return parseIperfUdp(await iperf3(client, server, serverIp, seconds, ['-u', '-l', String(payload), '-b', '0']));
}

export async function ping(from: Netns, to: string, count: number, intervalS: number): Promise<PingResult> {
  const p = from.spawn('ping', ['-c', String(count), '-i', String(intervalS), '-W', '1', to]);
  const out = collect(p);
  await waitExit(p, count * intervalS * 1000 + EXIT_GRACE_MS);
  return parsePing(out.out());
}

/** Wait until `from` can ping `to` (ARP, joins), up to timeoutMs; throws otherwise. */
export async function waitReachable(from: Netns, to: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    const r = from.exec('ping', ['-c', '1', '-W', '1', to], { allowFail: true });
    if (r.status === 0) return;
    last = r.stdout + r.stderr;
  }
  throw new Error(`${from.name} cannot ping ${to}: ${last.trim().split('\n').slice(-2).join(' ')}`);
}

/**
 * `top` after delayMs: the busiest processes over a 1 s sample (second frame, so
 * %CPU is over that second, not since boot), and the CPU summary line.
 */
export async function topSnapshot(delayMs: number, lines = 8): Promise<string> {
  await new Promise((r) => setTimeout(r, delayMs));
  const top = spawnTracked('top', ['-b', '-n', '2', '-d', '1', '-w', '160']);
  const out = collect(top);
  await waitExit(top, 10_000).catch(() => undefined);
  const frames = out.out().split(/^top - /m);
  const last = frames[frames.length - 1] ?? '';
  const rows = last.split('\n');
  const cpu = rows.find((l) => l.startsWith('%Cpu')) ?? '';
  const head = rows.findIndex((l) => /^\s*PID\s/.test(l));
  return [cpu, ...rows.slice(head, head + 1 + lines)].join('\n');
}
