// Unit tests of lib/crypto/keys.ts: key generation and base64 text, key files and
// their permissions, PSK files, and the allow-list parser's errors.
import { test } from 'node:test';
import { spawnSync } from 'node:child_process';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  decodeKey,
  encodeKey,
  generateKeyPair,
  parseAllowList,
  publicKeyOf,
  readKeyFile,
  readPsk,
  writeKeyFile,
} from '../../lib/crypto/keys.js';

function tempDir(): { dir: string; [Symbol.dispose](): void } {
  const dir = mkdtempSync(join(tmpdir(), 'etherlink-keys-'));
  return { dir, [Symbol.dispose]: () => rmSync(dir, { recursive: true, force: true }) };
}

test('generateKeyPair gives 32-byte keys, publicKeyOf agrees, each pair is fresh', () => {
  const a = generateKeyPair();
  const b = generateKeyPair();
  assert.equal(a.privateKey.length, 32);
  assert.equal(a.publicKey.length, 32);
  assert.deepEqual(publicKeyOf(a.privateKey), a.publicKey);
  assert.notDeepEqual(a.privateKey, b.privateKey);
});

test('generated keys are clamped scalars whose public half OpenSSL derives the same way', () => {
  for (let i = 0; i < 20; i++) {
    const { privateKey, publicKey } = generateKeyPair();
    assert.equal(privateKey[0]! & 7, 0, 'low three bits clear');
    assert.equal(privateKey[31]! & 0xc0, 0x40, 'bit 255 clear, bit 254 set');
    // An independent path: PKCS#8 DER import, SPKI DER export of the public key.
    const der = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b656e04220420', 'hex'), privateKey]), format: 'der', type: 'pkcs8' });
    assert.deepEqual(createPublicKey(der).export({ type: 'spki', format: 'der' }).subarray(12), publicKey);
  }
});

test('making ephemeral keys under constant garbage collection never stalls (Node 20 deadlocks in generateKeyPairSync + JWK export)', () => {
  // The old code hung within ~5000 keys like this, three times out of three.
  const keys = new URL('../../lib/crypto/keys.js', import.meta.url).href;
  const script = `import { generateEphemeral } from ${JSON.stringify(keys)};
    let junk = [];
    for (let i = 0; i < 20000; i++) { generateEphemeral(); junk.push(new Array(50).fill(i)); if (junk.length > 1000) junk = []; }
    console.log('done');`;
  const r = spawnSync(process.execPath, ['--max-semi-space-size=1', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.signal, null, `killed by ${r.signal} after 60 s: stuck`);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'done');
});

test('publicKeyOf matches RFC 7748 section 6.1 (Alice)', () => {
  const priv = Buffer.from('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a', 'hex');
  assert.equal(publicKeyOf(priv).toString('hex'), '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
});

test('base64 round trip is 44 characters, WireGuard style', () => {
  const { publicKey } = generateKeyPair();
  const text = encodeKey(publicKey);
  assert.equal(text.length, 44);
  assert.match(text, /=$/);
  assert.deepEqual(decodeKey(text), publicKey);
  assert.deepEqual(decodeKey(`  ${text}\n`), publicKey, 'surrounding whitespace is ignored');
  // wg's documentation example key decodes.
  assert.equal(decodeKey('yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=').length, 32);
});

test('decodeKey errors carry ERR_INVALID_KEY and say what is wrong', () => {
  const check = (text: string, pattern: RegExp): void => {
    assert.throws(
      () => decodeKey(text, 'public key of peer x'),
      (e: Error & { code?: string }) => e.code === 'ERR_INVALID_KEY' && pattern.test(e.message) && /peer x/.test(e.message),
    );
  };
  check('abc', /expected 44 base64 characters.*got 3/);
  check('', /got 0/);
  check('yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk', /got 43/);
  check('yAnz5TF-lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=', /not base64/);
  check('yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBml=', /canonical/);
  assert.throws(() => encodeKey(Buffer.alloc(31)), { code: 'ERR_INVALID_KEY' });
  assert.throws(() => publicKeyOf(Buffer.alloc(33)), { code: 'ERR_INVALID_KEY' });
});

test('writeKeyFile creates mode 0600 even with a permissive umask, refuses to overwrite by default', () => {
  using t = tempDir();
  const path = join(t.dir, 'switch.key');
  const { privateKey, publicKey } = generateKeyPair();
  const old = process.umask(0);
  try {
    writeKeyFile(path, privateKey);
  } finally {
    process.umask(old);
  }
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.equal(readFileSync(path, 'utf8'), encodeKey(privateKey) + '\n');
  const read = readKeyFile(path);
  assert.deepEqual(read.privateKey, privateKey);
  assert.deepEqual(read.publicKey, publicKey);
  assert.equal(read.warning, undefined);

  const other = generateKeyPair();
  assert.throws(() => writeKeyFile(path, other.privateKey), (e: Error & { code?: string }) => e.code === 'EEXIST' && /already exists/.test(e.message));
  assert.deepEqual(readKeyFile(path).privateKey, privateKey, 'unchanged');

  chmodSync(path, 0o644);
  writeKeyFile(path, other.privateKey, { overwrite: true });
  assert.equal(statSync(path).mode & 0o777, 0o600, 'overwrite also fixes the mode');
  assert.deepEqual(readKeyFile(path).privateKey, other.privateKey);
});

test('writeKeyFile and readKeyFile refuse to follow a symlink', () => {
  using t = tempDir();
  const target = join(t.dir, 'target');
  writeFileSync(target, 'x');
  const link = join(t.dir, 'link.key');
  symlinkSync(target, link);
  assert.throws(() => writeKeyFile(link, generateKeyPair().privateKey, { overwrite: true }), { code: 'ELOOP' });
  assert.equal(readFileSync(target, 'utf8'), 'x');
  assert.throws(() => readKeyFile(link), { code: 'ELOOP' });
});

test('readKeyFile warns when group or others can read or write the file', () => {
  using t = tempDir();
  const path = join(t.dir, 'port.key');
  writeKeyFile(path, generateKeyPair().privateKey);
  chmodSync(path, 0o644);
  assert.equal(readKeyFile(path).warning, `key file ${path} is readable by others (mode 0644): chmod 600 ${path}`);
  chmodSync(path, 0o640);
  assert.match(readKeyFile(path).warning ?? '', /readable by others \(mode 0640\)/);
  chmodSync(path, 0o620);
  assert.match(readKeyFile(path).warning ?? '', /writable by others \(mode 0620\)/);
  chmodSync(path, 0o400);
  assert.equal(readKeyFile(path).warning, undefined);
});

test('readKeyFile names the file when its content is not a key', () => {
  using t = tempDir();
  const path = join(t.dir, 'bad.key');
  writeFileSync(path, 'not a key\n', { mode: 0o600 });
  assert.throws(() => readKeyFile(path), (e: Error & { code?: string }) => e.code === 'ERR_INVALID_KEY' && e.message.includes(path));
});

test('readPsk reads 32 bytes of base64 and checks permissions the same way', () => {
  using t = tempDir();
  const path = join(t.dir, 'psk');
  const psk = generateKeyPair().privateKey; // any 32 bytes
  writeKeyFile(path, psk);
  assert.deepEqual(readPsk(path), { psk });
  chmodSync(path, 0o604);
  assert.match(readPsk(path).warning ?? '', /^pre-shared key file .* is readable by others \(mode 0604\): chmod 600 /);
  writeFileSync(path, 'c2hvcnQ=\n');
  assert.throws(() => readPsk(path), (e: Error & { code?: string }) => e.code === 'ERR_INVALID_KEY' && /pre-shared key/.test(e.message));
});

test('parseAllowList: comments, blank lines, optional names, line numbers', () => {
  const a = generateKeyPair().publicKey;
  const b = generateKeyPair().publicKey;
  const text = ['# ports allowed on this switch', '', `${encodeKey(a)} office-1   # the first one`, '   ', `  ${encodeKey(b)}`, '#end'].join('\n');
  const entries = parseAllowList(text);
  assert.equal(entries.length, 2);
  assert.deepEqual(entries[0], { publicKey: a, name: 'office-1', line: 3 });
  assert.deepEqual(entries[1], { publicKey: b, line: 5 });
  assert.deepEqual(parseAllowList(''), []);
  assert.equal(parseAllowList(`${encodeKey(a)}\r\n${encodeKey(b)}\r\n`).length, 2, 'CRLF');
});

test('parseAllowList errors name the line and the problem', () => {
  const a = encodeKey(generateKeyPair().publicKey);
  const fails = (text: string, code: string, line: number, pattern: RegExp): void => {
    assert.throws(
      () => parseAllowList(text, 'allow.txt'),
      (e: Error & { code?: string; line?: number }) =>
        e.code === code && e.line === line && e.message.includes(`allow.txt line ${line}`) && pattern.test(e.message),
    );
  };
  fails(`# ok\n${a}\nnot-a-key name`, 'ERR_INVALID_KEY', 3, /expected 44 base64 characters/);
  fails(`${a} one two`, 'ERR_INVALID_ALLOW_LIST', 1, /\[name\] \[vlan=N \| trunk=N,M \[pvid=P\]\]', got '.* one two'/);
  fails(`${a} x\n\n${a} y`, 'ERR_INVALID_ALLOW_LIST', 3, /already listed on line 1/);
  fails(`${encodeKey(Buffer.alloc(32))}`, 'ERR_INVALID_KEY', 1, /all zeros/);
  fails(`${a} ${'n'.repeat(65)}`, 'ERR_INVALID_ALLOW_LIST', 1, /at most 64/);
});
