// Isolated networks and VLAN modes as the switch loads them: allow-file
// options, one network per key, the --network flags and the config file's
// `networks` object, and the README's examples of both.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeKey, generateKeyPair, parseAllowList } from '../../lib/crypto/keys.js';
import { checkNetworks, mergedAllowList, DEFAULT_NETWORK } from '../../lib/daemon/networks.js';
import { formatVlanMode } from '../../lib/switch/vlan.js';
import { networkSources } from '../../cli/networks.js';
import { SWITCH_FIELD_RULES, validateConfig, schemaFromOptions } from '../../cli/config.js';
import { root } from '../helpers/lan.js';

const key = (): string => encodeKey(generateKeyPair().publicKey);

test('allow-file lines carry a VLAN mode after the optional name; bad modes name the line and the fix', () => {
  const [a, b, c, d] = [key(), key(), key(), key()];
  const entries = parseAllowList([`${a} office vlan=10`, `${b} vlan=20`, `${c} router trunk=10,20 pvid=1`, `${d} plain`].join('\n'), 'lab.allow');
  assert.deepEqual(
    entries.map((e) => [e.name, e.vlan === undefined ? 'transparent' : formatVlanMode(e.vlan), e.source]),
    [
      ['office', 'access 10', 'lab.allow'],
      [undefined, 'access 20', 'lab.allow'],
      ['router', 'trunk 10,20 pvid 1', 'lab.allow'],
      ['plain', 'transparent', 'lab.allow'],
    ],
  );
  for (const [line, re] of [
    [`${a} x vlan=0`, /lab\.allow line 1: .*vlan=0/],
    [`${a} x vlan=4095`, /lab\.allow line 1: .*4095/],
    [`${a} x vlan=10 trunk=20`, /lab\.allow line 1: .*vlan=.*trunk=/],
    [`${a} x pvid=3`, /lab\.allow line 1: .*pvid=.*trunk=/],
    [`${a} x colour=red`, /lab\.allow line 1: .*colour=red/],
    [`${a} vlan=10 name-after-option`, /lab\.allow line 1: expected '<base64 public key> \[name\]/],
    [`${a} one two`, /lab\.allow line 1: expected/],
  ] as const) {
    assert.throws(() => parseAllowList(line, 'lab.allow'), (err: Error & { code?: string }) => err.code === 'ERR_INVALID_ALLOW_LIST' && re.test(err.message), line);
  }
});

test('a key in two networks is refused, naming the key, both networks and both files', () => {
  const shared = key();
  const red = parseAllowList(`${key()} h1\n${shared} h2\n`, '/etc/etherlink/red.allow');
  const blue = parseAllowList(`${shared} h3\n`, '/etc/etherlink/blue.allow');
  assert.throws(
    () => checkNetworks([
      { name: 'red', allow: red },
      { name: 'blue', allow: blue },
    ]),
    (err: Error & { code?: string }) =>
      err.code === 'ERR_KEY_IN_TWO_NETWORKS' &&
      err.message.includes(shared) &&
      err.message.includes("'red' (/etc/etherlink/red.allow line 2)") &&
      err.message.includes("'blue' (/etc/etherlink/blue.allow line 1)"),
  );
  // Apart, the same files are fine; the merged list marks each entry's network.
  checkNetworks([{ name: 'red', allow: red }]);
  const merged = mergedAllowList([{ name: 'red', allow: red }, { name: 'blue', allow: parseAllowList(`${key()} h4\n`, 'b') }]);
  assert.deepEqual(merged.map((e) => [e.name, e.network]), [['h1', 'red'], ['h2', 'red'], ['h4', 'blue']]);
  for (const [specs, re] of [
    [[], /at least one network/],
    [[{ name: 'bad name', allow: [] }], /network name 'bad name'/],
    [[{ name: 'x', allow: [] }, { name: 'x', allow: [] }], /'x' is given twice/],
    [[{ name: 'x', allow: [], maxMacs: 0 }], /maxMacs must be an integer >= 1/],
  ] as const) {
    assert.throws(() => checkNetworks(specs), (err: Error & { code?: string }) => err.code === 'ERR_INVALID_NETWORK' && re.test(err.message));
  }
});

test('--network NAME=FILE, the networks object and --allow: one list of sources, conflicts named', () => {
  assert.deepEqual(networkSources({ allow: 'a.allow' }), [{ name: DEFAULT_NETWORK, file: 'a.allow' }]);
  assert.deepEqual(networkSources({ network: ['red=r.allow', 'blue=/x/b=c.allow'] }), [
    { name: 'red', file: 'r.allow' },
    { name: 'blue', file: '/x/b=c.allow' },
  ]);
  assert.deepEqual(networkSources({ networks: { red: 'r.allow', blue: { allow: 'b.allow', 'max-macs': 9, 'storm-limit': 0 } } }), [
    { name: 'red', file: 'r.allow' },
    { name: 'blue', file: 'b.allow', maxMacs: 9, stormLimit: 0 },
  ]);
  assert.deepEqual(networkSources({}), []);
  assert.throws(() => networkSources({ network: ['red'] }), /--network 'red': give NAME=ALLOWFILE/);
  assert.throws(() => networkSources({ network: ['=x'] }), /NAME=ALLOWFILE/);
  assert.throws(() => networkSources({ allow: 'a', network: ['red=r'] }), /--allow and --network/);
});

test('the config file\'s networks object is checked: a file per name, or allow with known limits', () => {
  const schema = schemaFromOptions({ key: { key: true } }, SWITCH_FIELD_RULES);
  assert.ok(schema['networks'], 'networks is a config field without a flag');
  validateConfig({ networks: { red: 'r.allow', blue: { allow: 'b.allow', 'max-macs-per-port': 4 } } }, schema);
  for (const [bad, re] of [
    [{ networks: ['red'] }, /"networks" must be an object/],
    [{ networks: { red: 3 } }, /network "red" must be an allow file path/],
    [{ networks: { red: { 'max-macs': 4 } } }, /network "red" needs "allow"/],
    [{ networks: { red: { allow: 'r', maxMacs: 4 } } }, /unknown field "maxMacs"/],
    [{ networks: { red: { allow: 'r', 'max-macs': 0 } } }, /"max-macs" must be an integer >= 1/],
  ] as const) {
    assert.throws(() => validateConfig(bad, schema), re, JSON.stringify(bad));
  }
});

test("the README's networks config and VLAN allow file are what the switch accepts", () => {
  const text = readFileSync(join(root, 'README.md'), 'utf8');
  const section = text.split(/^## /m).find((s) => s.startsWith('Several networks'));
  assert.ok(section, 'README has the "Several networks" section');
  const json = /^```json\n([\s\S]*?)^```$/m.exec(section)?.[1];
  assert.ok(json, 'with a json block');
  const schema = schemaFromOptions({ key: { key: true } }, SWITCH_FIELD_RULES);
  const values = validateConfig(JSON.parse(json), schema);
  assert.deepEqual(networkSources(values).map((s) => s.name), ['red', 'blue']);
  const allow = /^```text\n([\s\S]*?)^```$/m.exec(section)?.[1];
  assert.ok(allow, 'with an allow file block');
  assert.deepEqual(parseAllowList(allow, 'README').map((e) => [e.name, e.vlan === undefined ? 'transparent' : formatVlanMode(e.vlan)]), [
    ['office-a', 'access 10'],
    ['office-b', 'access 20'],
    ['router', 'trunk 10,20 pvid 1'],
  ]);
});
