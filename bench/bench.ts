// npm run bench: EtherLink against the kernel on the same machine in the same run.
//   overlay  host 1 -> host 2 through a switch namespace: EtherLink modes vs kernel VXLAN + bridge
//   tap      the JS bridge between two TAPs vs a veth pair
//   scale    one vswitch with 2 ports vs 1,000 ports and 100k learned MACs
//   aead     batched AEAD in the addon vs a node:crypto cipher per packet
//   relay-crypto  the relay's open + re-seal on 1, 2 and N worker threads at once
//   relay-workers pair data relayed end to end by vswitch --workers 0, 1, 2 and N
// `--section NAME` (repeatable, or BENCH_SECTIONS=a,b) picks sections; default all.
// Env knobs: bench/config.ts. Markdown on stdout, JSON under results/.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cleanup, ensureTools, isRoot, runTag } from '../lab/netns.js';
import { config, QUICK, SECTIONS, type Section } from './config.js';
import { overlayTable, runOverlay, type OverlayResult } from './overlay.js';
import { commandLine, machineInfo, writeResults } from './report.js';
import { runScale, scaleTable, type ScaleResult } from './scale.js';
import { runTapBridge, tapBridgeTable, type TapBridgeResult } from './tap-bridge.js';
import { aeadTable, runAead, type AeadResult } from './aead.js';
import { relayCryptoTable, runRelayCrypto, type RelayCryptoResult } from './relay-crypto.js';
import { relayWorkersTable, runRelayWorkers, type RelayWorkersResult } from './relay-workers.js';

const root = join(fileURLToPath(import.meta.url), '..', '..', '..');

function sections(): Section[] {
  const { values } = parseArgs({ options: { section: { type: 'string', multiple: true } }, strict: true });
  const names = (values.section ?? process.env.BENCH_SECTIONS?.split(',') ?? [...SECTIONS]).flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean);
  const bad = names.filter((n) => !(SECTIONS as readonly string[]).includes(n));
  if (bad.length > 0) throw new Error(`unknown section(s) ${bad.join(', ')}: choose from ${SECTIONS.join(', ')}`);
  return SECTIONS.filter((s) => names.includes(s));
}

async function main(): Promise<number> {
  if (!isRoot()) {
    console.error('bench: needs root (network namespaces, veths and TAP devices): run it as root');
    return 4;
  }
  const chosen = sections();
  ensureTools({ iperf3: 'iperf3', ping: 'iputils-ping', ip: 'iproute2' });
  const started = Date.now();
  const tag = runTag();
  const machine = machineInfo();
  const command = commandLine();
  console.log(`bench: ${command}`);
  console.log(`machine: ${machine.nproc} x ${machine.cpuModel}, kernel ${machine.kernel}, node ${machine.node}, ${machine.iperf3}, load ${machine.loadAverage1m.toFixed(2)}`);
  console.log(`sections: ${chosen.join(', ')}${QUICK ? ' (BENCH_QUICK: short, for checking the bench, not for numbers)' : ''}`);

  const out: { overlay?: OverlayResult | { error: string }; tap?: TapBridgeResult | { error: string }; scale?: ScaleResult | { error: string }; aead?: AeadResult | { error: string }; 'relay-crypto'?: RelayCryptoResult | { error: string }; 'relay-workers'?: RelayWorkersResult | { error: string } } = {};
  const tables: string[] = [];
  // A section that throws is reported; the others still run.
  for (const s of chosen) {
    try {
      if (s === 'overlay') {
        const r = await runOverlay(tag);
        out.overlay = r;
        tables.push(`### overlay: EtherLink vs kernel VXLAN (median of ${r.config.runs})\n\n${overlayTable(r)}`);
      } else if (s === 'tap') {
        const r = await runTapBridge(tag);
        out.tap = r;
        tables.push(`### tap: JS bridge between two TAPs vs veth (median of ${r.config.runs})\n\n${tapBridgeTable(r)}`);
      } else if (s === 'aead') {
        const r = runAead(QUICK ? 200 : 2000);
        out.aead = r;
        tables.push(`### aead: batched in the addon vs per packet (${r.rounds} rounds of ${64})\n\n${aeadTable(r)}`);
      } else if (s === 'relay-crypto') {
        const r = await runRelayCrypto();
        out['relay-crypto'] = r;
        tables.push(`### relay-crypto: the relay's AEAD stage (open + re-seal) on worker threads, not end-to-end relay throughput\n\n${relayCryptoTable(r)}`);
      } else if (s === 'relay-workers') {
        const r = await runRelayWorkers(tag);
        out['relay-workers'] = r;
        tables.push(`### relay-workers: pair data relayed end to end by vswitch --workers ${r.workerCounts.join(', ')} (median of ${config.runs})\n\n${relayWorkersTable(r)}`);
      } else {
        const r = await runScale(tag);
        out.scale = r;
        tables.push(`### scale: one vswitch, 2 ports vs ${config.scalePorts} ports\n\n${scaleTable(r)}`);
      }
    } catch (err) {
      out[s] = { error: (err as Error).stack ?? String(err) };
      tables.push(`### ${s}: FAILED\n\n${(err as Error).message}`);
      console.error(`section ${s} failed: ${(err as Error).stack ?? String(err)}`);
    }
  }
  const seconds = Math.round((Date.now() - started) / 1000);
  console.log(`\n${tables.join('\n\n')}\n`);
  const file = writeResults(root, 'bench', { date: new Date(started).toISOString(), command, machine, config, seconds, sections: chosen, ...out });
  console.log(`total ${Math.floor(seconds / 60)} min ${seconds % 60} s; results written to ${file}`);
  return Object.values(out).some((r) => 'error' in r) ? 1 : 0;
}

try {
  process.exitCode = await main();
} finally {
  cleanup();
}
