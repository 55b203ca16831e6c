// The switch's networks from its flags and config: `--network NAME=ALLOWFILE`
// (repeatable), the config file's `networks` object, or `--allow FILE` for one
// network named 'default'. Read on start and on every SIGHUP.
import { checkNetworks, DEFAULT_NETWORK, type NetworkSpec } from '../lib/daemon/networks.js';
import { UsageError } from './args.js';
import { parseVtepAddress, type VtepAddress } from '../lib/daemon/vxlan.js';
import { loadAllowList } from './identity.js';

/** Where one network's members and limits come from. */
export interface NetworkSource {
  name: string;
  file: string;
  maxMacs?: number;
  maxMacsPerPort?: number;
  stormLimit?: number;
  vni?: number;
  vteps?: VtepAddress[];
}

/** The network sources the options give: --network flags and the `networks` object together, else --allow. */
export function networkSources(opts: { allow?: string | undefined; network?: readonly string[] | undefined; networks?: unknown }): NetworkSource[] {
  const out: NetworkSource[] = [];
  for (const flag of opts.network ?? []) {
    const at = flag.indexOf('=');
    if (at <= 0 || at === flag.length - 1) throw new UsageError(`--network '${flag}': give NAME=ALLOWFILE, e.g. --network lab=/etc/etherlink/lab.allow`);
    out.push({ name: flag.slice(0, at), file: flag.slice(at + 1) });
  }
  const obj = (opts.networks ?? {}) as Record<string, string | { allow: string; 'max-macs'?: number; 'max-macs-per-port'?: number; 'storm-limit'?: number; vni?: number; vteps?: string[] }>;
  for (const [name, v] of Object.entries(obj)) {
    if (typeof v === 'string') {
      out.push({ name, file: v });
      continue;
    }
    out.push({
      name,
      file: v.allow,
      ...(v['max-macs'] !== undefined ? { maxMacs: v['max-macs'] } : {}),
      ...(v['max-macs-per-port'] !== undefined ? { maxMacsPerPort: v['max-macs-per-port'] } : {}),
      ...(v['storm-limit'] !== undefined ? { stormLimit: v['storm-limit'] } : {}),
      ...(v.vni !== undefined ? { vni: v.vni } : {}),
      ...(v.vteps !== undefined ? { vteps: v.vteps.map((x) => parseVtepAddress(x)) } : {}),
    });
  }
  if (out.length > 0 && opts.allow !== undefined) {
    throw new UsageError('--allow and --network (or the config\'s "networks") both given: --allow is one network named default; list it as --network default=FILE instead');
  }
  if (out.length === 0 && opts.allow !== undefined) out.push({ name: DEFAULT_NETWORK, file: opts.allow });
  return out;
}

/** Read every network's allow file and check the set (one network per key, valid unique names). */
export function loadNetworks(sources: readonly NetworkSource[]): NetworkSpec[] {
  const specs = sources.map((src): NetworkSpec => {
    const spec: NetworkSpec = { name: src.name, allow: loadAllowList(src.file), allowFile: src.file };
    if (src.maxMacs !== undefined) spec.maxMacs = src.maxMacs;
    if (src.maxMacsPerPort !== undefined) spec.maxMacsPerPort = src.maxMacsPerPort;
    if (src.stormLimit !== undefined) spec.stormLimit = src.stormLimit;
    if (src.vni !== undefined) spec.vni = src.vni;
    if (src.vteps !== undefined) spec.vteps = src.vteps;
    return spec;
  });
  checkNetworks(specs);
  return specs;
}
