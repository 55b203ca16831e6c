// Config files of the daemons (--config FILE): JSON holding any flag by its long
// name, checked against the CLI's own options, merged under the command line,
// and compared on SIGHUP to tell what can be applied live. Pure except readConfigFile.
import { readFileSync } from 'node:fs';
import { cliFail, UsageError } from './args.js';
import { parseVtepAddress, VNI_MAX } from '../lib/daemon/vxlan.js';

export type FieldType = 'string' | 'number' | 'integer' | 'boolean' | 'object';

export interface FieldSpec {
  type: FieldType;
  /** An 'object' field (a config file only, no flag): its own check, returning what is wrong, or undefined. */
  check?: (value: unknown) => string | undefined;
  /** A list (repeatable flag); a single value is accepted and wrapped. */
  array?: boolean;
  choices?: readonly string[];
  min?: number;
  max?: number;
}

export type ConfigSchema = Readonly<Record<string, FieldSpec>>;
export type ConfigValues = Record<string, unknown>;

/** A bad config file: exit code 2 like any bad flag (lib/cli.ts). */
export class ConfigError extends UsageError {}

export interface ConfigFile {
  path: string;
  values: ConfigValues;
  /** 1-based line of each top-level field, for messages. */
  lines: ReadonlyMap<string, number>;
}

/** Fields a config file may never hold: they are about the command line itself. */
const NOT_IN_FILE = new Set(['help', 'version', 'config', '$0', '_']);

/** Edit distance at most this counts as a near miss ("did you mean"). */
const MAX_SUGGESTION_DISTANCE = 2;
/** Nesting beyond this is not a config file (and would only exhaust the stack). */
const MAX_JSON_DEPTH = 64;

/** 1-based line and column of a character offset. */
export function lineCol(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}

/**
 * Strict JSON (RFC 8259) with positions: the value, and the line of each
 * top-level key. Errors name line and column and say how to fix the text.
 * Our own scanner because V8's messages carry no position for many errors.
 */
export function parseJsonWithLines(text: string, where = 'config'): { value: unknown; lines: Map<string, number> } {
  let pos = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  const lines = new Map<string, number>();

  const fail = (at: number, msg: string): never => {
    const { line, column } = lineCol(text, at);
    throw new ConfigError(`${where}: line ${line}, column ${column}: ${msg}`);
  };
  const skipWs = (): void => {
    while (pos < text.length && ' \t\n\r'.includes(text[pos]!)) pos++;
  };
  const describe = (at: number): string => (at >= text.length ? 'the end of the file' : `'${text[at]}'`);
  const unexpected = (at: number, expected: string): never => {
    const c = text[at];
    if (at >= text.length) return fail(at, `unexpected end of the file, expected ${expected}: a closing '}' or ']' may be missing`);
    if (c === "'") return fail(at, "strings and field names need double quotes (\"...\"), not single quotes");
    if (c === '/' || c === '#') return fail(at, 'JSON has no comments: remove them');
    if (/[A-Za-z_]/.test(c!)) {
      const word = /[A-Za-z_][\w-]*/y;
      word.lastIndex = at;
      const m = word.exec(text);
      return fail(at, `unexpected '${m?.[0] ?? c}', expected ${expected}: strings need double quotes ("${m?.[0] ?? c}")`);
    }
    return fail(at, `unexpected ${describe(at)}, expected ${expected}`);
  };

  const parseString = (): string => {
    const start = pos;
    pos++; // opening quote
    while (pos < text.length) {
      const c = text.charCodeAt(pos);
      if (c === 0x22) {
        pos++;
        try {
          return JSON.parse(text.slice(start, pos)) as string;
        } catch {
          return fail(start, 'bad escape in a string: use \\", \\\\, \\/, \\b, \\f, \\n, \\r, \\t or \\uXXXX');
        }
      }
      if (c === 0x5c) pos += 2;
      else if (c < 0x20) return fail(pos, 'a line break or control character inside a string: close the string with " on the same line');
      else pos++;
    }
    return fail(start, 'a string is never closed: add the closing "');
  };

  const parseValue = (depth: number): unknown => {
    if (depth > MAX_JSON_DEPTH) return fail(pos, `nested deeper than ${MAX_JSON_DEPTH} levels`);
    skipWs();
    const c = text[pos];
    if (c === '{') return parseObject(depth);
    if (c === '[') return parseArray(depth);
    if (c === '"') return parseString();
    for (const [word, value] of [['true', true], ['false', false], ['null', null]] as const) {
      if (text.startsWith(word, pos)) {
        pos += word.length;
        return value;
      }
    }
    const num = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
    num.lastIndex = pos;
    const m = num.exec(text);
    if (m && m[0] !== '' && m[0] !== '-') {
      pos += m[0].length;
      return Number(m[0]);
    }
    return unexpected(pos, 'a value (a "string", a number, true, false, null, [ or {)');
  };

  const parseArray = (depth: number): unknown[] => {
    pos++;
    const out: unknown[] = [];
    skipWs();
    if (text[pos] === ']') {
      pos++;
      return out;
    }
    for (;;) {
      out.push(parseValue(depth + 1));
      skipWs();
      if (text[pos] === ',') {
        const comma = pos++;
        skipWs();
        if (text[pos] === ']') return fail(comma, "a trailing comma before ']': remove it");
        continue;
      }
      if (text[pos] === ']') {
        pos++;
        return out;
      }
      return unexpected(pos, "',' or ']' after a list item");
    }
  };

  const parseObject = (depth: number): Record<string, unknown> => {
    pos++;
    const out: Record<string, unknown> = {};
    const seenAt = new Map<string, number>();
    skipWs();
    if (text[pos] === '}') {
      pos++;
      return out;
    }
    for (;;) {
      skipWs();
      if (text[pos] !== '"') return unexpected(pos, 'a field name in double quotes');
      const keyAt = pos;
      const key = parseString();
      const keyLine = lineCol(text, keyAt).line;
      if (seenAt.has(key)) return fail(keyAt, `field "${key}" appears twice (first on line ${seenAt.get(key)}): keep one`);
      seenAt.set(key, keyLine);
      if (depth === 0) lines.set(key, keyLine);
      skipWs();
      if (text[pos] !== ':') return unexpected(pos, `':' after the field name "${key}"`);
      pos++;
      // defineProperty: a field named __proto__ stays a field (and is then unknown).
      Object.defineProperty(out, key, { value: parseValue(depth + 1), enumerable: true, writable: true, configurable: true });
      skipWs();
      if (text[pos] === ',') {
        const comma = pos++;
        skipWs();
        if (text[pos] === '}') return fail(comma, "a trailing comma before '}': remove it");
        continue;
      }
      if (text[pos] === '}') {
        pos++;
        return out;
      }
      return unexpected(pos, "',' or '}' after a value (fields are separated by commas)");
    }
  };

  skipWs();
  if (text[pos] !== '{') {
    if (pos >= text.length) fail(pos, 'the file is empty: it must hold one JSON object, e.g. { "log-level": "info" }');
    fail(pos, 'a config file holds one JSON object: start it with {');
  }
  const value = parseValue(0);
  skipWs();
  if (pos < text.length) fail(pos, `unexpected ${describe(pos)} after the closing '}': one object per file`);
  return { value, lines };
}

/** Levenshtein distance, for "did you mean". */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

/** The valid field a misspelt one most likely meant (portTimeout, port_timeout, prot-timeout). */
export function suggestField(name: string, valid: readonly string[]): string | undefined {
  const kebab = name.replace(/([a-z0-9])([A-Z])/g, '$1-$2').replace(/_/g, '-').toLowerCase();
  if (valid.includes(kebab)) return kebab;
  let best: string | undefined;
  let bestDistance = MAX_SUGGESTION_DISTANCE + 1;
  for (const v of valid) {
    const d = editDistance(kebab, v);
    if (d < bestDistance) {
      best = v;
      bestDistance = d;
    }
  }
  return best;
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'string') return `the string ${JSON.stringify(v)}`;
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

function expectation(spec: FieldSpec): string {
  if (spec.choices) return `one of ${spec.choices.map((c) => `"${c}"`).join(', ')}`;
  const what = { string: 'a string', number: 'a number', integer: 'an integer', boolean: 'true or false', object: 'an object' }[spec.type];
  if (spec.type === 'number' || spec.type === 'integer') {
    if (spec.min !== undefined && spec.max !== undefined) return `${what} from ${spec.min} to ${spec.max}`;
    if (spec.min !== undefined) return `${what} >= ${spec.min}`;
    if (spec.max !== undefined) return `${what} <= ${spec.max}`;
  }
  return what;
}

function checkScalar(v: unknown, spec: FieldSpec): boolean {
  if (spec.choices) return typeof v === 'string' && spec.choices.includes(v);
  switch (spec.type) {
    case 'string':
      return typeof v === 'string';
    case 'boolean':
      return typeof v === 'boolean';
    case 'object':
      return typeof v === 'object' && v !== null && !Array.isArray(v);
    case 'number':
    case 'integer':
      return (
        typeof v === 'number' &&
        Number.isFinite(v) &&
        (spec.type === 'number' || Number.isInteger(v)) &&
        (spec.min === undefined || v >= spec.min) &&
        (spec.max === undefined || v <= spec.max)
      );
  }
}

/**
 * Check parsed values against the schema. Unknown fields are named with the
 * valid ones (and a near miss); bad values with the field and what it takes.
 */
export function validateConfig(raw: unknown, schema: ConfigSchema, where = 'config', lines: ReadonlyMap<string, number> = new Map()): ConfigValues {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(`${where}: a config file holds one JSON object of flags by their long names`);
  const at = (k: string): string => (lines.has(k) ? `${where}: line ${lines.get(k)}: ` : `${where}: `);
  const valid = Object.keys(schema).sort();
  const out: ConfigValues = {};
  for (const [key, value] of Object.entries(raw)) {
    const spec = Object.hasOwn(schema, key) ? schema[key] : undefined;
    if (spec === undefined) {
      const guess = suggestField(key, valid);
      const hint = NOT_IN_FILE.has(key) ? ` ("${key}" belongs on the command line)` : guess !== undefined ? `: did you mean "${guess}"?` : '';
      throw new ConfigError(`${at(key)}unknown field "${key}"${hint} Valid fields: ${valid.join(', ')}`);
    }
    const expected = spec.array ? `${expectation(spec)}, or a list of them` : expectation(spec);
    if (value === null) throw new ConfigError(`${at(key)}field "${key}" is null: give ${expected}, or remove the field to use the default`);
    if (spec.array) {
      const list = Array.isArray(value) ? value : [value];
      const bad = list.findIndex((v) => !checkScalar(v, spec));
      if (bad >= 0) {
        const item = Array.isArray(value) ? ` (item ${bad + 1})` : '';
        throw new ConfigError(`${at(key)}field "${key}" must be ${expected}; got ${typeName(list[bad])}${item}`);
      }
      out[key] = list;
    } else {
      if (!checkScalar(value, spec)) throw new ConfigError(`${at(key)}field "${key}" must be ${expected}; got ${typeName(value)}`);
      const problem = spec.check?.(value);
      if (problem !== undefined) throw new ConfigError(`${at(key)}field "${key}": ${problem}`);
      out[key] = value;
    }
  }
  return out;
}

/** Parse and check a config file's text. */
export function parseConfigText(text: string, path: string, schema: ConfigSchema): ConfigFile {
  const where = `config ${path}`;
  const { value, lines } = parseJsonWithLines(text, where);
  return { path, values: validateConfig(value, schema, where, lines), lines };
}

/** Read, parse and check a config file; unreadable files explain themselves. */
export function readConfigFile(path: string, schema: ConfigSchema): ConfigFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const e = err as { code?: string; message: string };
    if (e.code === 'ENOENT') throw new ConfigError(`config ${path} does not exist: check the --config path`);
    if (e.code === 'EACCES') throw new ConfigError(`config ${path} is not readable by this user: fix its owner or mode`);
    if (e.code === 'EISDIR') throw new ConfigError(`config ${path} is a directory: give the JSON file`);
    throw new ConfigError(`config ${path}: ${e.message}`);
  }
  return parseConfigText(text, path, schema);
}

/** The option table yargs keeps (yargs.getOptions()): the parts a schema needs. */
export interface CliOptionTable {
  key: Record<string, unknown>;
  string?: readonly string[];
  number?: readonly string[];
  boolean?: readonly string[];
  array?: readonly string[];
  choices?: Readonly<Record<string, readonly unknown[]>>;
  default?: Readonly<Record<string, unknown>>;
}

/**
 * The schema of a CLI's config file: every option it declares, typed as
 * declared, with tighter rules (ranges, integers) from `rules`. Derived from
 * the parser so that a new flag is valid in a config file the day it is added.
 */
export function schemaFromOptions(table: CliOptionTable, rules: Readonly<Record<string, Partial<FieldSpec>>> = {}): ConfigSchema {
  const has = (list: readonly string[] | undefined, k: string): boolean => list?.includes(k) ?? false;
  const schema: Record<string, FieldSpec> = {};
  for (const key of Object.keys(table.key)) {
    if (NOT_IN_FILE.has(key)) continue;
    const choices = table.choices?.[key];
    const spec: FieldSpec = {
      type: has(table.boolean, key) ? 'boolean' : has(table.number, key) ? 'number' : 'string',
      ...(has(table.array, key) ? { array: true } : {}),
      ...(choices ? { choices: choices.map(String) } : {}),
      ...rules[key],
    };
    schema[key] = spec;
  }
  // Fields of the file alone (no flag): objects such as the switch's networks.
  for (const [key, rule] of Object.entries(rules)) if (!(key in schema) && rule.type === 'object') schema[key] = rule as FieldSpec;
  return schema;
}

/** Value rules of the switch's fields beyond their yargs types (the same limits the CLI checks). */
export const SWITCH_FIELD_RULES: Readonly<Record<string, Partial<FieldSpec>>> = {
  port: { type: 'integer', min: 0, max: 65535 },
  'mac-age': { min: 1 },
  'max-macs': { type: 'integer', min: 1 },
  'max-macs-per-port': { type: 'integer', min: 1 },
  'mac-move-hold': { min: 0 },
  'port-timeout': { min: 2, max: 65535 },
  'max-ports': { type: 'integer', min: 1 },
  'rekey-after': { min: 1 },
  'reflector-port': { type: 'integer', min: 0, max: 65535 },
  'storm-limit': { min: 0 },
  'loop-block': { min: 1 },
  workers: { type: 'integer', min: 0, max: 64 },
  vni: { type: 'integer', min: 1, max: VNI_MAX },
  'vtep-max-macs': { type: 'integer', min: 1 },
  'vxlan-mtu': { type: 'integer', min: 576, max: 65535 },
  networks: { type: 'object', check: checkNetworksField },
};

/** Limits a network of the config file's `networks` object may set for itself. */
const NETWORK_LIMIT_FIELDS: Readonly<Record<string, { min: number; integer: boolean }>> = {
  'max-macs': { min: 1, integer: true },
  'max-macs-per-port': { min: 1, integer: true },
  'storm-limit': { min: 0, integer: false },
};

/** Fields of a network entry besides its limits: its VXLAN identity (with "vxlan" set). */
const NETWORK_VXLAN_FIELDS = ['vni', 'vteps'] as const;

/**
 * The switch's `networks` object: NAME -> allow file, or NAME -> { "allow":
 * FILE, "max-macs": N, "max-macs-per-port": N, "storm-limit": N, "vni": N,
 * "vteps": ["IP[:PORT]", ...] }.
 */
function checkNetworksField(value: unknown): string | undefined {
  for (const [name, v] of Object.entries(value as Record<string, unknown>)) {
    if (typeof v === 'string') continue;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return `network "${name}" must be an allow file path, or an object with "allow" and optional limits`;
    const o = v as Record<string, unknown>;
    if (typeof o['allow'] !== 'string') return `network "${name}" needs "allow": the path of its allow file`;
    for (const [k, x] of Object.entries(o)) {
      if (k === 'allow') continue;
      if (k === 'vni') {
        if (typeof x !== 'number' || !Number.isInteger(x) || x < 1 || x > VNI_MAX) return `network "${name}": "vni" must be an integer from 1 to ${VNI_MAX}`;
        continue;
      }
      if (k === 'vteps') {
        if (!Array.isArray(x) || !x.every((v) => typeof v === 'string')) return `network "${name}": "vteps" must be a list of "IP[:PORT]" strings`;
        for (const v of x as string[]) {
          try {
            parseVtepAddress(v);
          } catch (err) {
            return `network "${name}": ${(err as Error).message}`;
          }
        }
        continue;
      }
      const rule = NETWORK_LIMIT_FIELDS[k];
      if (rule === undefined) return `network "${name}": unknown field "${k}" (valid: allow, ${[...Object.keys(NETWORK_LIMIT_FIELDS), ...NETWORK_VXLAN_FIELDS].join(', ')})`;
      if (typeof x !== 'number' || !Number.isFinite(x) || x < rule.min || (rule.integer && !Number.isInteger(x))) return `network "${name}": "${k}" must be ${rule.integer ? 'an integer' : 'a number'} >= ${rule.min}`;
    }
  }
  return undefined;
}

/** Value rules of the port's fields. 68..65535: lib/tap.ts MIN_MTU/MAX_MTU. */
export const PORT_FIELD_RULES: Readonly<Record<string, Partial<FieldSpec>>> = {
  port: { type: 'integer', min: 1, max: 65535 },
  mtu: { type: 'integer', min: 68, max: 65535 },
  'rekey-after': { min: 1 },
  'max-pair-sessions': { type: 'integer', min: 1, max: 65535 },
};

/** Long flags given on the command line (`--name` or `--name=value`), up to a bare `--`. */
export function flagsOnCommandLine(rawArgs: readonly string[]): Set<string> {
  const out = new Set<string>();
  for (const a of rawArgs) {
    if (a === '--') break;
    const m = /^--([^=]+)/.exec(a);
    if (m) out.add(m[1]!);
  }
  return out;
}

/**
 * The options in effect: the command line wins, then the file, then the
 * defaults. `given` holds what the command line set (flagsOnCommandLine plus
 * positionals that were given).
 */
export function mergeConfig<T extends Record<string, unknown>>(argv: T, file: ConfigValues, given: ReadonlySet<string>): T {
  const out: Record<string, unknown> = { ...argv };
  for (const [k, v] of Object.entries(file)) if (!given.has(k)) out[k] = v;
  return out as T;
}

export interface ReloadPlan {
  /** Fields to apply now, with their new effective value (the default when the field was removed). */
  apply: ConfigValues;
  /** Changed fields that only take effect on a restart. */
  restart: string[];
  /** Changed in the file, but the command line sets them and wins. */
  overridden: string[];
}

function sameValue(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** What a SIGHUP can do with a re-read config file, field by field. */
export function planReload(
  prev: ConfigValues,
  next: ConfigValues,
  opts: { given: ReadonlySet<string>; live: ReadonlySet<string>; defaults: Readonly<Record<string, unknown>> },
): ReloadPlan {
  const plan: ReloadPlan = { apply: {}, restart: [], overridden: [] };
  for (const k of [...new Set([...Object.keys(prev), ...Object.keys(next)])].sort()) {
    if (sameValue(prev[k], next[k])) continue;
    if (opts.given.has(k)) plan.overridden.push(k);
    else if (opts.live.has(k)) plan.apply[k] = k in next ? next[k] : opts.defaults[k];
    else plan.restart.push(k);
  }
  return plan;
}

/** A CLI's options after --config: what is in effect and where each came from. */
export interface CliConfig<T> {
  argv: T;
  /** undefined without --config; replaced by each successful reload. */
  file: ConfigFile | undefined;
  /** Keys the command line set (they win over the file, now and on reload). */
  given: ReadonlySet<string>;
  schema: ConfigSchema;
  defaults: Readonly<Record<string, unknown>>;
}

/**
 * Apply `--config FILE` (when argv.config is set) under the command line.
 * `table` is the parser's option table (yargs getOptions()), `rawArgs` the
 * arguments as typed. Throws ConfigError for a bad file.
 */
export function withConfigFile<T extends Record<string, unknown>>(
  argv: T,
  table: CliOptionTable,
  rawArgs: readonly string[],
  rules: Readonly<Record<string, Partial<FieldSpec>>>,
): CliConfig<T> {
  const schema = schemaFromOptions(table, rules);
  const defaults = table.default ?? {};
  const given = flagsOnCommandLine(rawArgs);
  // Positionals (and flags without a default) that hold a value came from the command line.
  for (const [k, v] of Object.entries(argv)) if (v !== undefined && !(k in defaults) && !NOT_IN_FILE.has(k)) given.add(k);
  const path = argv['config'];
  if (typeof path !== 'string') return { argv, file: undefined, given, schema, defaults };
  const file = readConfigFile(path, schema);
  return { argv: mergeConfig(argv, file.values, given), file, given, schema, defaults };
}

/** SIGHUP: read the config file again and sort its changes into apply / restart / overridden. */
export function reloadConfigFile<T>(cfg: CliConfig<T>, live: ReadonlySet<string>): { file: ConfigFile; plan: ReloadPlan } {
  if (cfg.file === undefined) throw new ConfigError('no --config file to reload');
  const file = readConfigFile(cfg.file.path, cfg.schema);
  return { file, plan: planReload(cfg.file.values, file.values, { given: cfg.given, live, defaults: cfg.defaults }) };
}

/** One log line's worth of what a reload could not apply, or undefined. */
export function describeUnapplied(plan: ReloadPlan): string | undefined {
  const parts: string[] = [];
  if (plan.restart.length > 0) parts.push(`${plan.restart.join(', ')} changed: restart to apply`);
  if (plan.overridden.length > 0) parts.push(`${plan.overridden.join(', ')} changed in the file but set on the command line, which wins`);
  return parts.length > 0 ? parts.join('; ') : undefined;
}

/**
 * Run a yargs parser, then apply --config FILE under what it parsed. A bad
 * file exits like a bad flag (code 2), naming the line, the field and the fix.
 */
export async function parseWithConfig<T extends Record<string, unknown>>(
  parser: { parseAsync(): Promise<T> },
  rawArgs: readonly string[],
  rules: Readonly<Record<string, Partial<FieldSpec>>>,
): Promise<CliConfig<T>> {
  const argv = await parser.parseAsync();
  // yargs keeps its option table (types, choices, defaults) behind getOptions(), absent from its typings.
  const table = (parser as unknown as { getOptions(): CliOptionTable }).getOptions();
  try {
    return withConfigFile(argv, table, rawArgs, rules);
  } catch (err) {
    return cliFail((err as Error).message, undefined);
  }
}

/** Fields a switch applies on SIGHUP without a restart. */
export const SWITCH_LIVE_FIELDS: ReadonlySet<string> = new Set(['log-level', 'allow', 'network', 'networks']);
/** Fields a port applies on SIGHUP without a restart. */
export const PORT_LIVE_FIELDS: ReadonlySet<string> = new Set(['log-level']);
