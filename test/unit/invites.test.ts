// Invites (lib/daemon/invites.ts) and their wire extension: URLs round-trip and
// bad ones say why; a proof is bound to the switch key, the port key and the
// id; a forged, replayed-by-another-key, expired or spent invite is refused;
// the book survives a reopen.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { InviteBook, formatInviteUrl, inviteProof, parseInviteUrl, allowFileName } from '../../lib/daemon/invites.js';
import { decodeExtensions, encodeExtensions } from '../../lib/protocol/wire.js';

const switchKey = randomBytes(32);

test('invite URLs round-trip, IPv6 included, and bad ones are refused with ERR_INVALID_INVITE', () => {
  for (const host of ['192.0.2.7', 'vpn.example.net', '2001:db8::1']) {
    const t = { host, port: 9999, switchPublicKey: switchKey, id: randomBytes(8), secret: randomBytes(16) };
    const back = parseInviteUrl(formatInviteUrl(t));
    assert.deepEqual(back, t);
  }
  const good = formatInviteUrl({ host: 'h', port: 1, switchPublicKey: switchKey, id: randomBytes(8), secret: randomBytes(16) });
  for (const bad of ['', 'http://h:1/AAAA', good.slice(0, -4), good.replace(':1/', ':70000/'), good.replace('/A', '/B')]) {
    assert.throws(() => parseInviteUrl(bad), { code: 'ERR_INVALID_INVITE' }, bad);
  }
});

test('the INVITE extension rides beside a name and PAIRS within the size limit', () => {
  const invite = { id: randomBytes(8), proof: randomBytes(16) };
  const bytes = encodeExtensions({ name: 'x'.repeat(32), pairs: true, invite });
  assert.deepEqual(decodeExtensions(bytes), { name: 'x'.repeat(32), pairs: true, invite });
  const cut = Buffer.from(bytes);
  cut[cut.length - 25] = 10; // the INVITE length byte, made wrong
  assert.equal(decodeExtensions(cut), null);
});

test('a proof is good only for its own port key, switch key and secret; expired and spent invites say so', () => {
  const dir = mkdtempSync(join(tmpdir(), 'etl-inv-unit-'));
  try {
    const file = join(dir, 'allow.invites');
    const book = new InviteBook(file);
    const now = 1_000_000;
    const { record, id, secret } = book.create({ network: 'default', name: 'laptop', expiresS: 60, uses: 1 }, now);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const port = randomBytes(32);
    const other = randomBytes(32);
    const proof = inviteProof(secret, switchKey, port, id);
    // Another key presenting the same proof, a proof for another switch, a guessed secret: as if there were no invite.
    assert.deepEqual(book.check(id, proof, switchKey, other, now), { ok: false, reason: 'unknown' });
    assert.deepEqual(book.check(id, inviteProof(secret, randomBytes(32), port, id), switchKey, port, now), { ok: false, reason: 'unknown' });
    assert.deepEqual(book.check(id, inviteProof(randomBytes(16), switchKey, port, id), switchKey, port, now), { ok: false, reason: 'unknown' });
    assert.deepEqual(book.check(randomBytes(8), proof, switchKey, port, now), { ok: false, reason: 'unknown' });
    assert.deepEqual(book.check(id, proof, switchKey, port, now + 61_000), { ok: false, reason: 'expired' });
    const ok = book.check(id, proof, switchKey, port, now);
    assert.ok(ok.ok);
    book.spend(ok.record, 'KEY');
    assert.deepEqual(book.check(id, proof, switchKey, port, now + 1), { ok: false, reason: 'used' });
    // Reopened (a switch restart): the spent invite is still spent.
    const again = new InviteBook(file);
    assert.equal(again.size, 1);
    assert.deepEqual(again.check(id, proof, switchKey, port, now + 2), { ok: false, reason: 'used' });
    assert.equal(again.list()[0]!.name, record.name);
    assert.throws(() => book.create({ network: 'default', expiresS: 0 }, now), { code: 'ERR_INVALID_ARG_VALUE' });
    assert.throws(() => book.create({ network: 'default', name: 'two words' }, now), { code: 'ERR_INVALID_ARG_VALUE' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('announced names become allow-file names without spaces, # or =', () => {
  assert.equal(allowFileName('my host#1 a=b', 'fb'), 'my-host-1-a-b');
  assert.equal(allowFileName(undefined, 'fb'), 'fb');
  assert.equal(allowFileName('   ', 'fb'), 'fb');
});
