// Unit tests of config files (lib/config.ts): JSON with positions, the schema
// taken from the parser's options, precedence, and what a SIGHUP may apply.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ConfigError,
  editDistance,
  flagsOnCommandLine,
  lineCol,
  mergeConfig,
  parseConfigText,
  parseJsonWithLines,
  planReload,
  schemaFromOptions,
  suggestField,
  SWITCH_FIELD_RULES,
  validateConfig,
  withConfigFile,
  type CliOptionTable,
} from '../../cli/config.js';
import { EXIT } from '../../cli/args.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The shape yargs.getOptions() has for a vswitch-like CLI. */
const TABLE: CliOptionTable = {
  key: { help: true, version: true, port: true, listen: true, 'port-timeout': true, 'max-ports': true, insecure: true, 'log-level': true, allow: true, config: true },
  string: ['port', 'listen', 'allow', 'config'],
  number: ['port-timeout', 'max-ports'],
  boolean: ['help', 'version', 'insecure'],
  array: ['listen'],
  choices: { 'log-level': ['error', 'warn', 'info', 'debug'] },
  default: { 'port-timeout': 30, 'max-ports': 1024, insecure: false, 'log-level': 'info' },
};
const SCHEMA = schemaFromOptions(TABLE, SWITCH_FIELD_RULES);

function throwsConfig(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (err: Error) => {
    assert.ok(err instanceof ConfigError, `a ConfigError, got ${err}`);
    assert.equal((err as ConfigError).code, 'ERR_USAGE', 'exits like a bad flag');
    assert.match(err.message, re);
    return true;
  });
}

test('lineCol counts lines and columns from 1', () => {
  const text = '{\n  "a": 1,\n  "b": x\n}';
  assert.deepEqual(lineCol(text, 0), { line: 1, column: 1 });
  assert.deepEqual(lineCol(text, text.indexOf('x')), { line: 3, column: 8 });
});

test('parses what JSON.parse parses, and records the line of each top-level field', () => {
  const text = '\ufeff{\n "a": [1, -2.5e3, "x\\u00e9\\n"],\n "b": {"c": null, "d": true},\n "e": false\n}\n';
  const { value, lines } = parseJsonWithLines(text);
  assert.deepEqual(value, JSON.parse(text.slice(1)));
  assert.deepEqual([...lines], [['a', 2], ['b', 3], ['e', 4]]);
});

test('JSON syntax errors name line and column and the fix', () => {
  const cases: [string, RegExp][] = [
    ['{\n  "listen": ["[::]:9999"],\n  "port-timeout": 30,\n}\n', /^cfg: line 3, column 21: a trailing comma before '}': remove it$/],
    ['{\n  "a": 1\n  "b": 2\n}', /^cfg: line 3, column 3: unexpected '"', expected ',' or '}' after a value/],
    ["{\n  'listen': 1\n}", /^cfg: line 2, column 3: .*double quotes/],
    ['{\n  // the switch\n  "a": 1\n}', /^cfg: line 2, column 3: JSON has no comments/],
    ['{\n  listen: 1\n}', /^cfg: line 2, column 3: unexpected 'listen'.*"listen"/],
    ['{\n  "a": [1, 2,]\n}', /^cfg: line 2, column 13: a trailing comma before '\]'/],
    ['{\n  "a": "open\n}', /^cfg: line 2, column 13: a line break .* inside a string/],
    ['{\n  "a": 1', /^cfg: line 2, column 9: unexpected end of the file.*closing/],
    ['', /^cfg: line 1, column 1: the file is empty/],
    ['["a"]', /^cfg: line 1, column 1: a config file holds one JSON object/],
    ['{"a": 1} {"b": 2}', /^cfg: line 1, column 10: .*one object per file/],
    ['{\n"a": 1,\n"a": 2}', /^cfg: line 3, column 1: field "a" appears twice \(first on line 2\)/],
    ['{"a": tru}', /^cfg: line 1, column 7: unexpected 'tru'/],
    ['{"a": 01}', /^cfg: line 1, column 8: unexpected '1'/],
  ];
  for (const [text, re] of cases) {
    throwsConfig(() => parseJsonWithLines(text, 'cfg'), re);
    // Stricter than JSON.parse on purpose: a list at the top, a field given twice.
    if (!text.startsWith('[') && !re.source.includes('appears twice')) assert.throws(() => JSON.parse(text), `JSON.parse agrees ${JSON.stringify(text)} is invalid`);
  }
});

test('the schema follows the parser: every option but help/version/config, typed, with value rules', () => {
  // networks: a field of the file alone (an object), from the switch's rules.
  assert.deepEqual(Object.keys(SCHEMA).sort(), ['allow', 'insecure', 'listen', 'log-level', 'max-ports', 'networks', 'port', 'port-timeout']);
  assert.deepEqual(SCHEMA['listen'], { type: 'string', array: true });
  assert.deepEqual(SCHEMA['port-timeout'], { type: 'number', min: 2, max: 65535 });
  assert.deepEqual(SCHEMA['max-ports'], { type: 'integer', min: 1 });
  assert.deepEqual(SCHEMA['port'], { type: 'integer', min: 0, max: 65535 });
  assert.deepEqual(SCHEMA['log-level'], { type: 'string', choices: ['error', 'warn', 'info', 'debug'] });
});

test('unknown fields are named with the valid ones and a suggestion for near misses', () => {
  throwsConfig(() => parseConfigText('{\n  "insecure": true,\n  "lisen": ["[::]:9999"]\n}', 'sw.json', SCHEMA), /^config sw\.json: line 3: unknown field "lisen": did you mean "listen"\? Valid fields: allow, insecure, listen, log-level, max-ports, networks, port, port-timeout$/);
  throwsConfig(() => validateConfig({ portTimeout: 3 }, SCHEMA), /unknown field "portTimeout": did you mean "port-timeout"\?/);
  throwsConfig(() => validateConfig({ port_timeout: 3 }, SCHEMA), /did you mean "port-timeout"\?/);
  throwsConfig(() => validateConfig({ frobnicate: 1 }, SCHEMA), /unknown field "frobnicate" Valid fields: allow,/);
  throwsConfig(() => validateConfig({ config: 'other.json' }, SCHEMA), /unknown field "config" \("config" belongs on the command line\)/);
  assert.equal(suggestField('max-port', Object.keys(SCHEMA)), 'max-ports');
  assert.equal(suggestField('zzz', Object.keys(SCHEMA)), undefined);
  assert.equal(editDistance('kitten', 'sitting'), 3);
});

test('a field named __proto__ is just an unknown field', () => {
  throwsConfig(() => parseConfigText('{"__proto__": {"insecure": true}}', 'f', SCHEMA), /unknown field "__proto__"/);
});

test('bad values name the field, the line and what it takes', () => {
  const bad: [string, RegExp][] = [
    ['{\n"port-timeout": "30s"}', /^config f: line 2: field "port-timeout" must be a number from 2 to 65535; got the string "30s"$/],
    ['{"port-timeout": 1}', /field "port-timeout" must be a number from 2 to 65535; got number 1/],
    ['{"max-ports": 2.5}', /field "max-ports" must be an integer >= 1; got number 2.5/],
    ['{"log-level": "loud"}', /field "log-level" must be one of "error", "warn", "info", "debug"; got the string "loud"/],
    ['{"insecure": "yes"}', /field "insecure" must be true or false; got the string "yes"/],
    ['{"listen": ["[::]:9999", 9999]}', /field "listen" must be a string, or a list of them; got number 9999 \(item 2\)/],
    ['{"allow": null}', /field "allow" is null: give a string, or remove the field to use the default/],
    ['{"port": 70000}', /field "port" must be an integer from 0 to 65535; got number 70000/],
    ['{"allow": {"path": "x"}}', /field "allow" must be a string; got an object/],
  ];
  for (const [text, re] of bad) throwsConfig(() => parseConfigText(text, 'f', SCHEMA), re);
});

test('good values pass; a single value of a list field becomes a list', () => {
  const f = parseConfigText('{"listen": "[::]:9999", "port-timeout": 2.5, "insecure": true, "log-level": "debug", "port": 9999}', 'f', SCHEMA);
  assert.deepEqual(f.values, { listen: ['[::]:9999'], 'port-timeout': 2.5, insecure: true, 'log-level': 'debug', port: 9999 });
});

test('precedence: the command line wins, then the file, then the defaults', () => {
  const raw = ['--port-timeout', '60', '--listen=127.0.0.1:1', '--', '--allow'];
  const given = flagsOnCommandLine(raw);
  assert.deepEqual([...given].sort(), ['listen', 'port-timeout'], 'flags after -- are not flags');
  // As parsed: port-timeout from the command line, max-ports and log-level defaulted.
  const argv = { 'port-timeout': 60, listen: ['127.0.0.1:1'], 'max-ports': 1024, 'log-level': 'info' };
  const file = { 'port-timeout': 10, listen: ['[::]:9999', '0.0.0.0:9998'], 'max-ports': 8, allow: '/etc/etherlink/allow' };
  assert.deepEqual(mergeConfig(argv, file, given), {
    'port-timeout': 60, // command line
    listen: ['127.0.0.1:1'], // command line replaces a list, never appends to it
    'max-ports': 8, // file over default
    'log-level': 'info', // default
    allow: '/etc/etherlink/allow', // file only
  });
});

test('withConfigFile: positionals given count as the command line; no --config changes nothing', () => {
  const dir = mkdtempSync(join(tmpdir(), 'etl-config-'));
  try {
    const path = join(dir, 'sw.json');
    writeFileSync(path, '{"port": 4789, "max-ports": 8, "log-level": "debug"}');
    const parsed = { _: [], $0: 'vswitch', port: '5000', config: path, 'max-ports': 1024, 'log-level': 'warn', insecure: false, 'port-timeout': 30 };
    const cfg = withConfigFile(parsed, TABLE, ['5000', '--config', path, '--log-level', 'warn'], SWITCH_FIELD_RULES);
    assert.equal(cfg.argv.port, '5000', 'the PORT positional beats the file');
    assert.equal(cfg.argv['max-ports'], 8, 'the file beats the default');
    assert.equal(cfg.argv['log-level'], 'warn', 'the flag beats the file');
    assert.ok(cfg.given.has('port') && cfg.given.has('log-level') && !cfg.given.has('max-ports'));
    const none = withConfigFile({ ...parsed, config: undefined }, TABLE, [], SWITCH_FIELD_RULES);
    assert.equal(none.file, undefined);
    assert.equal(none.argv['max-ports'], 1024);
    throwsConfig(() => withConfigFile({ ...parsed, config: join(dir, 'missing.json') }, TABLE, [], SWITCH_FIELD_RULES), /missing\.json does not exist: check the --config path/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('planReload: live fields apply, others need a restart, command-line ones are overridden', () => {
  const prev = { 'log-level': 'info', listen: ['[::]:9999'], allow: '/a', 'port-timeout': 30, 'max-ports': 8 };
  const next = { 'log-level': 'debug', listen: ['[::]:9998'], allow: '/b', 'port-timeout': 60 };
  const plan = planReload(prev, next, {
    given: new Set(['port-timeout']),
    live: new Set(['log-level', 'allow', 'max-ports']),
    defaults: { 'max-ports': 1024 },
  });
  assert.deepEqual(plan, {
    apply: { allow: '/b', 'log-level': 'debug', 'max-ports': 1024 }, // a removed field returns to its default
    restart: ['listen'],
    overridden: ['port-timeout'],
  });
  assert.deepEqual(planReload(prev, { ...prev }, { given: new Set(), live: new Set(), defaults: {} }), { apply: {}, restart: [], overridden: [] });
});

test('a bad file is a usage error: exit code 2', () => {
  assert.equal(EXIT.usage, 2);
  throwsConfig(() => parseConfigText('{', 'f', SCHEMA), /line 1, column 2/);
});
