// The EtherLink modes the overlay section measures, each compared with kernel
// VXLAN. A mode is extra CLI arguments for vswitch and vport, optionally made
// by a setup step (e.g. generating key files). Adding a mode = adding a row.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeKey, generateKeyPair, writeKeyFile } from '../lib/crypto/keys.js';

export interface ModeArgs {
  /** Extra arguments for `vswitch`. */
  switch: readonly string[];
  /** Extra arguments for the `vport` of host i (from 1). */
  port: (host: number) => readonly string[];
}

export interface ModeContext {
  /** A private, empty directory for this mode's files; removed after the bench. */
  dir: string;
  /** Host count; vport i runs in host i. */
  hosts: number;
}

export interface EtherlinkMode {
  name: string;
  /** One line for the report. */
  describe: string;
  /**
   * Arguments for this mode; may create files under ctx.dir. A throw (or
   * a process that fails to start with these arguments) is reported for this
   * mode and the bench goes on with the others.
   */
  setup: (ctx: ModeContext) => ModeArgs | Promise<ModeArgs>;
}

/** Keys for the switch and each host, an allow file, and `extra` on both ends. */
function keyedMode({ dir, hosts }: ModeContext, extra: readonly string[]): ModeArgs {
  const sw = generateKeyPair();
  writeKeyFile(join(dir, 'switch.key'), sw.privateKey);
  const lines: string[] = [];
  for (let i = 1; i <= hosts; i++) {
    const pair = generateKeyPair();
    writeKeyFile(join(dir, `h${i}.key`), pair.privateKey);
    lines.push(`${encodeKey(pair.publicKey)} h${i}`);
  }
  writeFileSync(join(dir, 'allow'), lines.join('\n') + '\n');
  return {
    switch: ['--key', join(dir, 'switch.key'), '--allow', join(dir, 'allow'), ...extra],
    port: (i) => ['--key', join(dir, `h${i}.key`), '--switch-key', encodeKey(sw.publicKey), ...extra],
  };
}

export const MODES: readonly EtherlinkMode[] = [
  {
    name: 'encrypted',
    describe: 'protocol 2: Noise IKpsk2 handshake, ChaCha20-Poly1305 per frame (the default)',
    setup: (ctx) => keyedMode(ctx, []),
  },
  {
    name: 'encrypted-aes',
    describe: 'protocol 2 with --cipher aes-256-gcm on both ends',
    setup: (ctx) => keyedMode(ctx, ['--cipher', 'aes-256-gcm']),
  },
  {
    name: 'encrypted-tcp',
    describe: 'protocol 2 as encrypted, the ports reaching the switch over TCP (--transport tcp), as where UDP is blocked',
    setup: (ctx) => {
      const m = keyedMode(ctx, []);
      return { switch: m.switch, port: (i) => [...m.port(i), '--transport', 'tcp'] };
    },
  },
  {
    name: 'plaintext',
    describe: 'protocol 1, no encryption (--insecure on both ends)',
    setup: () => ({ switch: ['--insecure'], port: () => ['--insecure'] }),
  },
];

/** The modes BENCH_MODES selects (all by default); unknown names are an error up front. */
export function selectModes(names: readonly string[] | undefined): EtherlinkMode[] {
  if (names === undefined || names.length === 0) return [...MODES];
  const unknown = names.filter((n) => !MODES.some((m) => m.name === n));
  if (unknown.length > 0) throw new Error(`BENCH_MODES: unknown mode(s) ${unknown.join(', ')}; known: ${MODES.map((m) => m.name).join(', ')}`);
  return MODES.filter((m) => names.includes(m.name));
}
