// Isolated networks on one switch: their specs, and the checks made when they
// are loaded (names, and one network per key). Each network gets its own
// learning Switch in SwitchServer; a member's key decides which.
import { EtherlinkError } from '../core/errors.js';
import { encodeKey, type AllowEntry } from '../crypto/keys.js';
import { checkVlanMode } from '../switch/vlan.js';
import { checkVni, type VtepAddress } from './vxlan.js';

/** The network of a switch given one allow list (`--allow FILE`, `allow:`). */
export const DEFAULT_NETWORK = 'default';
/** Network names: what status, metrics labels and logs show. */
export const NETWORK_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/;

/** One isolated network: the keys that join it and, optionally, its own limits. */
export interface NetworkSpec {
  /** 1 to 32 characters: letters, digits, '.', '_', '-' (NETWORK_NAME_PATTERN). */
  name: string;
  /** The keys of its members (readAllowFile). */
  allow: readonly AllowEntry[];
  /** Where `allow` came from, for messages and status. */
  allowFile?: string;
  /** Learned MACs in this network's table (default: the switch's maxMacs). */
  maxMacs?: number;
  /** Learned MACs per port in this network (default: the switch's maxMacsPerPort). */
  maxMacsPerPort?: number;
  /** Broadcast, multicast and unknown-unicast frames per second per port (default: the switch's stormLimit; 0: no limit). */
  stormLimit?: number;
  /** Its VXLAN network identifier, on a switch that is a VTEP (SwitchServerOptions.vxlan). */
  vni?: number;
  /** The remote VTEPs of its VNI: each is a port of this network. */
  vteps?: readonly VtepAddress[];
}

/**
 * Check a set of networks before it is used: names valid and unique, and no
 * key in two networks (a key's network must be unambiguous). Throws
 * ERR_INVALID_NETWORK or ERR_KEY_IN_TWO_NETWORKS naming both places.
 */
export function checkNetworks(specs: readonly NetworkSpec[]): void {
  if (specs.length === 0) throw new EtherlinkError('ERR_INVALID_NETWORK', 'a switch needs at least one network (--network NAME=ALLOWFILE, or --allow FILE)');
  const names = new Set<string>();
  const owner = new Map<string, { spec: NetworkSpec; entry: AllowEntry }>();
  const where = (spec: NetworkSpec, e: AllowEntry): string => `${e.source ?? spec.allowFile ?? `network ${spec.name}`} line ${e.line}`;
  for (const spec of specs) {
    if (!NETWORK_NAME_PATTERN.test(spec.name)) {
      throw new EtherlinkError('ERR_INVALID_NETWORK', `network name '${spec.name}': use 1 to 32 letters, digits, '.', '_' or '-', starting with a letter or digit`);
    }
    if (names.has(spec.name)) throw new EtherlinkError('ERR_INVALID_NETWORK', `network '${spec.name}' is given twice: one allow file per network`);
    names.add(spec.name);
    for (const [k, v] of [['maxMacs', spec.maxMacs], ['maxMacsPerPort', spec.maxMacsPerPort]] as const) {
      if (v !== undefined && !(Number.isInteger(v) && v >= 1)) throw new EtherlinkError('ERR_INVALID_NETWORK', `network '${spec.name}': ${k} must be an integer >= 1, got ${v}`);
    }
    if (spec.vni !== undefined) {
      try {
        checkVni(spec.vni);
      } catch (err) {
        throw new EtherlinkError('ERR_INVALID_NETWORK', `network '${spec.name}': ${(err as Error).message}`);
      }
      const other = specs.find((o) => o !== spec && o.vni === spec.vni);
      if (other !== undefined) throw new EtherlinkError('ERR_INVALID_NETWORK', `VNI ${spec.vni} is given to network '${other.name}' and to network '${spec.name}': a VNI names one network`);
    }
    if (spec.stormLimit !== undefined && !(spec.stormLimit >= 0 && Number.isFinite(spec.stormLimit))) {
      throw new EtherlinkError('ERR_INVALID_NETWORK', `network '${spec.name}': stormLimit must be a number >= 0 (0: no limit), got ${spec.stormLimit}`);
    }
    for (const e of spec.allow) {
      if (e.vlan !== undefined) {
        try {
          checkVlanMode(e.vlan);
        } catch (err) {
          throw new EtherlinkError('ERR_INVALID_NETWORK', `network '${spec.name}', ${where(spec, e)}: ${(err as Error).message}`);
        }
      }
      const hex = e.publicKey.toString('hex');
      const had = owner.get(hex);
      if (had !== undefined && had.spec !== spec) {
        throw new EtherlinkError(
          'ERR_KEY_IN_TWO_NETWORKS',
          `key ${encodeKey(e.publicKey)} is listed in network '${had.spec.name}' (${where(had.spec, had.entry)}) and in network '${spec.name}' (${where(spec, e)}): a key joins one network; remove it from one of the files`,
        );
      }
      owner.set(hex, { spec, entry: e });
    }
  }
}

/** Every network's entries as one allow list, each entry marked with its network. */
export function mergedAllowList(specs: readonly NetworkSpec[]): AllowEntry[] {
  return specs.flatMap((s) => s.allow.map((e): AllowEntry => ({ ...e, network: s.name, ...(e.source === undefined && s.allowFile !== undefined ? { source: s.allowFile } : {}) })));
}
