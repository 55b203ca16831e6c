// Least privilege for the daemons: which capabilities this process holds
// (/proc/PID/status), and giving them all up once the device and sockets exist.
import { readFileSync } from 'node:fs';
import { native, type NativeCapabilityDrop } from '../io/native.js';
import type { Logger } from '../core/log.js';

/** Capability numbers (linux/capability.h) the daemons care about. */
export const CAP_NET_BIND_SERVICE = 10;
export const CAP_NET_ADMIN = 12;

export interface CapabilitySets {
  inheritable: bigint;
  permitted: bigint;
  effective: bigint;
  bounding: bigint;
  ambient: bigint;
}

/** The Cap* lines of a /proc/PID/status text (hex masks). */
export function parseCapabilities(status: string): CapabilitySets {
  const read = (name: string): bigint => {
    const m = new RegExp(`^${name}:\\s*([0-9a-fA-F]+)$`, 'm').exec(status);
    return m ? BigInt(`0x${m[1]!}`) : 0n;
  };
  return { inheritable: read('CapInh'), permitted: read('CapPrm'), effective: read('CapEff'), bounding: read('CapBnd'), ambient: read('CapAmb') };
}

/** Capabilities of a process (its main thread), or of this one. */
export function readCapabilities(pid: number | 'self' = 'self'): CapabilitySets {
  return parseCapabilities(readFileSync(`/proc/${pid}/status`, 'utf8'));
}

export function hasCapability(mask: bigint, cap: number): boolean {
  return (mask & (1n << BigInt(cap))) !== 0n;
}

/** True when there is anything to drop. */
export function holdsCapabilities(c: CapabilitySets = readCapabilities()): boolean {
  return c.effective !== 0n || c.permitted !== 0n || c.ambient !== 0n || c.inheritable !== 0n;
}

/** What a vport can no longer do once it has dropped its capabilities. */
export const AFTER_DROP_LIMITS =
  'the device can no longer be reconfigured (MTU, MAC, addresses, up/down) or re-created; frames, rejoining, re-resolving the switch and removing the device at exit still work';

/**
 * Clear the effective, permitted, inheritable and ambient sets of every thread
 * (and the bounding set when allowed). Errors carry .code (EPERM, ...).
 */
export function dropCapabilities(): NativeCapabilityDrop {
  return native().dropCapabilities();
}

/**
 * --drop-privileges: once everything privileged is done (device, sockets),
 * give up every capability this process holds, and say so. Throws (with .code)
 * when the drop fails: a daemon asked to drop must not run on with them.
 */
export function dropPrivilegesIfHeld(enabled: boolean, log: Logger): void {
  const held = readCapabilities();
  if (!holdsCapabilities(held)) {
    log.debug('no capabilities held: nothing to drop');
    return;
  }
  if (!enabled) {
    log.info('keeping capabilities (--drop-privileges=false)', { effective: held.effective.toString(16) });
    return;
  }
  const r = dropCapabilities();
  log.info('capabilities dropped', {
    threads: r.threads,
    // Node's inspector signal thread blocks every signal and keeps its set; it runs no code of ours.
    unreachable: r.unreachable,
    boundingSet: r.boundingSet,
  });
}
