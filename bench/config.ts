// Every knob of `npm run bench` in one place, each overridable by an env var.
// Defaults fit the whole default run (all sections) in under 10 minutes on 2 cores.

function num(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const v = Number(raw);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name}=${raw}: expected a positive number`);
  return v;
}

/** BENCH_QUICK=1: short durations for checking that the bench works, not for numbers. */
export const QUICK = process.env.BENCH_QUICK === '1';

export const config = {
  /** Runs per figure; the median is reported. */
  runs: Math.round(num('BENCH_RUNS', 3)),
  /** iperf3 TCP duration (1 and 4 streams), and of the TAP-bridge section. */
  tcpSeconds: num('BENCH_TCP_SECONDS', QUICK ? 3 : 10),
  /** iperf3 UDP, 64-byte payloads, unlimited rate. */
  udpSeconds: num('BENCH_UDP_SECONDS', QUICK ? 2 : 5),
  udpPayload: 64,
  pingCount: Math.round(num('BENCH_PING_COUNT', QUICK ? 50 : 200)),
  pingIntervalS: 0.01,
  /** Scale section: ports and learned MACs of the big case. */
  scalePorts: Math.round(num('BENCH_SCALE_PORTS', QUICK ? 200 : 1000)),
  scaleMacs: Math.round(num('BENCH_SCALE_MACS', QUICK ? 20_000 : 100_000)),
  /** Scale section: measured seconds per case, after the warm-up. */
  scaleSeconds: num('BENCH_SCALE_SECONDS', QUICK ? 2 : 5),
  scaleWarmupSeconds: num('BENCH_SCALE_WARMUP_SECONDS', 1),
  /** Datagrams one generator socket sends per sendmmsg. */
  scaleBurst: Math.round(num('BENCH_SCALE_BURST', 16)),
  /** Datagrams in flight (sent, not yet delivered) the generator allows. */
  scaleWindow: Math.round(num('BENCH_SCALE_WINDOW', 2048)),
  /** Scale section: the generator's sockets use UDP GSO/GRO as a vport's do (BENCH_SCALE_OFFLOAD=1). */
  scaleOffload: process.env.BENCH_SCALE_OFFLOAD === '1',
  /** Scale section: a folder for a V8 CPU profile (node --cpu-prof) of each run's vswitch and generator; unset: none. */
  scaleCpuProfDir: process.env.BENCH_SCALE_CPU_PROF || undefined,
  /** Relay-crypto section: measured seconds per thread count and frame size, per run. */
  relayCryptoSeconds: num('BENCH_RELAY_CRYPTO_SECONDS', QUICK ? 0.5 : 2),
  /** Relay-workers section: members of the generator, each sending to and receiving from 8 others. */
  relayMembers: Math.round(num('BENCH_RELAY_MEMBERS', 32)),
  /** Relay-workers section: measured seconds per frame size and worker count, after the warm-up. */
  relaySeconds: num('BENCH_RELAY_SECONDS', QUICK ? 1 : 3),
  relayWarmupSeconds: num('BENCH_RELAY_WARMUP_SECONDS', QUICK ? 0.5 : 1),
  /** Relay-workers section: datagrams per burst (one sendmmsg, or one GSO message, to one destination). */
  relayBurst: Math.round(num('BENCH_RELAY_BURST', 16)),
  /** Relay-workers section: datagrams in flight (sent, not yet delivered) the generator allows. */
  relayWindow: Math.round(num('BENCH_RELAY_WINDOW', 4096)),
  /** Relay-workers section: with UDP GSO/GRO on the generator's sockets as a vport's (1), without (0), or both (unset). */
  relayOffload: process.env.BENCH_RELAY_OFFLOAD === '1' ? [true] : process.env.BENCH_RELAY_OFFLOAD === '0' ? [false] : [true, false],
  /** EtherLink modes to run (comma list); default all of bench/modes.ts. */
  modes: process.env.BENCH_MODES?.split(',').map((s) => s.trim()).filter(Boolean),
  /** UDP port of the vswitch. */
  switchPort: 9999,
} as const;

export const SECTIONS = ['aead', 'relay-crypto', 'relay-workers', 'overlay', 'tap', 'scale'] as const;
export type Section = (typeof SECTIONS)[number];

/** Environment variables a reader of the results needs to reproduce them. */
export const ENV_VARS = [
  'BENCH_RUNS',
  'BENCH_QUICK',
  'BENCH_TCP_SECONDS',
  'BENCH_UDP_SECONDS',
  'BENCH_PING_COUNT',
  'BENCH_SCALE_PORTS',
  'BENCH_SCALE_MACS',
  'BENCH_SCALE_SECONDS',
  'BENCH_SCALE_WARMUP_SECONDS',
  'BENCH_SCALE_BURST',
  'BENCH_SCALE_WINDOW',
  'BENCH_SCALE_OFFLOAD',
  'BENCH_SCALE_CPU_PROF',
  'BENCH_RELAY_CRYPTO_SECONDS',
  'BENCH_RELAY_MEMBERS',
  'BENCH_RELAY_SECONDS',
  'BENCH_RELAY_WARMUP_SECONDS',
  'BENCH_RELAY_BURST',
  'BENCH_RELAY_WINDOW',
  'BENCH_RELAY_OFFLOAD',
  'BENCH_MODES',
  'BENCH_SECTIONS',
] as const;
