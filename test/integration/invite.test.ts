// End to end, joining by invite (issue 14): `vswitch invite` prints a URL, a
// host with nothing but that URL joins with `vport join` and pings the LAN;
// the allow file gains exactly one named line; the same URL a second time,
// and an expired one, are refused on both sides; an invite survives a switch
// restart; `--config` lets the host restart without the URL; and a capture
// of a join holds neither the secret nor the new key's private half.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildStar, cleanup, collect, ensureTools, requireRoot, runTag, waitExit, waitFor, waitForOutput, type StarHost } from '../helpers/netns.js';
import { bin, lanKeys, pingOnce, START_TIMEOUT_MS, startPort, SWITCH_PORT } from '../helpers/lan.js';
import { formatInviteUrl, parseInviteUrl } from '../../lib/daemon/invites.js';
import { readKeyFile, encodeKey, publicKeyOf } from '../../lib/crypto/keys.js';

const run = promisify(execFile);
const tag = runTag();
const tmp = mkdtempSync(join(tmpdir(), 'etl-invite-'));
const JOINED = /vport etl0 joined \S+\n/;

after(() => {
  cleanup();
  rmSync(tmp, { recursive: true, force: true });
});

/** Ask the switch behind `control` for an invite; the URL is the last line printed. */
async function invite(control: string, args: readonly string[]): Promise<string> {
  const r = await run(process.execPath, [bin('vswitch'), 'invite', '--control', control, ...args], { encoding: 'utf8' });
  const lines = r.stdout.trim().split('\n');
  return lines[lines.length - 1]!;
}

/** `vport join URL` on `host` (device etl0, address 10.99.0.i) with a key file that does not exist yet. */
function join_(host: StarHost, i: number, url: string, extra: readonly string[] = []): ChildProcess {
  return host.ns.spawn(process.execPath, [bin('vport'), 'join', url, '--key', join(tmp, `h${i}-joined.key`), '--name', 'etl0', '--ip', `10.99.0.${i}/24`, '--control', join(tmp, `vport-${i}-${Date.now()}.sock`), ...extra]);
}

test('a host joins with nothing but an invite; a used or expired invite is refused on both sides; invites survive a restart', async (t) => {
  if (!requireRoot(t)) return;
  ensureTools({ ping: 'iputils-ping', tcpdump: 'tcpdump' });
  const keys = lanKeys();
  const { sw, hosts } = buildStar(tag, 3);
  const [h1, h2, h3] = hosts as [StarHost, StarHost, StarHost];
  // The allow file lists h1 only; h2 and h3 arrive by invite.
  const allow = join(tmp, 'allow');
  writeFileSync(allow, `# the test LAN\n${keys.portPub(1)} h1\n`);
  const control = join(tmp, 'vswitch.sock');
  const startSwitch = async (): Promise<ChildProcess> => {
    const child = sw.spawn(process.execPath, [bin('vswitch'), String(SWITCH_PORT), '--key', keys.switchKey, '--allow', allow, '--control', control]);
    await waitForOutput(child, new RegExp(`vswitch ready on UDP ${SWITCH_PORT}\\n`), START_TIMEOUT_MS);
    return child;
  };
  let vswitch = await startSwitch();
  const port1 = await startPort(h1, 1);

  // Invite A, for h2, named 'laptop'; hosts reach the switch at the address on their own veth.
  const urlA = await invite(control, ['--name', 'laptop', '--address', `${h2.switchAddress}:${SWITCH_PORT}`]);
  const tokenA = parseInviteUrl(urlA);
  assert.equal(tokenA.host, h2.switchAddress);
  assert.equal(encodeKey(tokenA.switchPublicKey), keys.switchPub, 'the invite carries the switch key');
  const invitesFile = `${allow}.invites`;
  assert.equal(statSync(invitesFile).mode & 0o777, 0o600, 'the invite file holds secrets: owner only');

  const config2 = join(tmp, 'h2.json');
  let port2 = join_(h2, 2, urlA, ['--config', config2]);
  await waitForOutput(port2, JOINED, START_TIMEOUT_MS);
  await waitFor('h2 pings h1 over the LAN', () => pingOnce(h2.ns, '10.99.0.1'), 10_000, 200);
  const key2 = readKeyFile(join(tmp, 'h2-joined.key'));
  assert.equal(statSync(join(tmp, 'h2-joined.key')).mode & 0o777, 0o600, 'the key vport join made is owner only');
  const pub2 = encodeKey(publicKeyOf(key2.privateKey));
  const lines = (): string[] => readFileSync(allow, 'utf8').split('\n').filter((l) => l !== '');
  assert.deepEqual(lines(), ['# the test LAN', `${keys.portPub(1)} h1`, `${pub2} laptop`], 'the allow file gained exactly one named line');
  await waitForOutput(vswitch, /invite redeemed: key added to the allow file/, 5_000);

  // The same invite again, from h3's new key: refused, and vport join says why and stops.
  // (Each host reaches the switch at its own veth's address: the same invite, h3's way in.)
  const used = join_(h3, 3, formatInviteUrl({ ...tokenA, host: h3.switchAddress }));
  const usedCode = await waitExit(used, 15_000).catch((err: Error) => {
    throw new Error(`${err.message}; vport join printed:\n${collect(used).out()}${collect(used).err()}\nvswitch printed:\n${collect(vswitch).out()}${collect(vswitch).err()}`);
  });
  assert.notEqual(usedCode, 0);
  assert.match(collect(used).err(), /refused the invite: it was used already/);
  await waitForOutput(vswitch, /invite refused: it was used already/, 5_000);
  assert.equal(lines().length, 3, 'a refused invite adds nothing');

  // An expired invite.
  const urlB = await invite(control, ['--expires', '1s', '--address', `${h3.switchAddress}:${SWITCH_PORT}`]);
  await new Promise((r) => setTimeout(r, 1_500));
  const expired = join_(h3, 3, urlB);
  assert.notEqual(await waitExit(expired, 15_000), 0);
  assert.match(collect(expired).err(), /refused the invite: it has expired/);
  await waitForOutput(vswitch, /invite refused: it has expired/, 5_000);
  assert.equal(lines().length, 3);

  // Invite C, made before a switch restart, still admits h3 after it (a capture watches the join).
  const urlC = await invite(control, ['--address', `${h3.switchAddress}:${SWITCH_PORT}`]);
  const tokenC = parseInviteUrl(urlC);
  vswitch.kill('SIGTERM');
  await waitExit(vswitch, 10_000);
  vswitch = await startSwitch();
  const pcap = join(tmp, 'join.pcap');
  const dump = sw.spawn('tcpdump', ['-i', 'any', '--immediate-mode', '-nn', '-s', '0', '-U', '-w', pcap, `udp port ${SWITCH_PORT} or tcp port ${SWITCH_PORT}`]);
  await waitForOutput(dump, /listening on/, 5_000);
  const port3 = join_(h3, 3, urlC);
  await waitForOutput(port3, JOINED, START_TIMEOUT_MS);
  await waitFor('h3 pings h2 over the LAN (h2 rejoined the restarted switch)', () => pingOnce(h3.ns, '10.99.0.2'), 15_000, 200);
  await waitFor('h3 pings h1', () => pingOnce(h3.ns, '10.99.0.1'), 10_000, 200);
  await new Promise((r) => setTimeout(r, 300));
  dump.kill('SIGINT');
  await waitExit(dump, 5_000);
  const key3 = readKeyFile(join(tmp, 'h3-joined.key'));
  const pub3 = encodeKey(publicKeyOf(key3.privateKey));
  assert.equal(lines().length, 4);
  assert.match(lines()[3]!, new RegExp(`^${pub3.replace(/[+/]/g, '\\$&')} \\S+$`), "h3's line names it by what its vport announced");

  // Neither the secret nor the new private key crossed the wire, in any encoding.
  const captured = readFileSync(pcap);
  assert.ok(captured.length > 500, `the capture holds the join (${captured.length} bytes): ${collect(dump).err()}`);
  for (const [what, bytes] of [
    ['invite secret', tokenC.secret],
    ["h3's private key", key3.privateKey],
  ] as const) {
    for (const form of [bytes, Buffer.from(bytes.toString('base64')), Buffer.from(bytes.toString('base64url')), Buffer.from(bytes.toString('hex'))]) {
      assert.equal(captured.indexOf(form), -1, `the capture holds the ${what}`);
    }
  }

  // h2 restarts from the settings vport join wrote: no invite needed (and A is spent anyway).
  const saved = JSON.parse(readFileSync(config2, 'utf8')) as Record<string, unknown>;
  assert.equal(saved['switch-key'], keys.switchPub);
  assert.equal(saved['host'], h2.switchAddress);
  port2.kill('SIGTERM');
  await waitExit(port2, 10_000);
  port2 = h2.ns.spawn(process.execPath, [bin('vport'), '--config', config2, '--control', join(tmp, 'vport-2-again.sock')]);
  await waitForOutput(port2, JOINED, START_TIMEOUT_MS);
  await waitFor('h2 pings h3 after its restart', () => pingOnce(h2.ns, '10.99.0.3'), 10_000, 200);

  for (const c of [port1, port2, port3, vswitch]) c.kill('SIGTERM');
});

test('vswitch invite --list shows the invites without their secrets; --revoke voids one, whose URL is then refused on both sides, while another still admits', async (t) => {
  if (!requireRoot(t)) return;
  const keys = lanKeys();
  const { sw, hosts } = buildStar(`${tag}r`, 2);
  const [h1, h2] = hosts as [StarHost, StarHost];
  const allow = join(tmp, 'allow-revoke');
  writeFileSync(allow, `${keys.portPub(1)} h1\n`);
  const control = join(tmp, 'vswitch-revoke.sock');
  const vswitch = sw.spawn(process.execPath, [bin('vswitch'), String(SWITCH_PORT), '--key', keys.switchKey, '--allow', allow, '--control', control]);
  await waitForOutput(vswitch, new RegExp(`vswitch ready on UDP ${SWITCH_PORT}\\n`), START_TIMEOUT_MS);
  const vswitchCli = (args: readonly string[]): Promise<{ code: number; out: string; err: string }> =>
    run(process.execPath, [bin('vswitch'), 'invite', '--control', control, ...args], { encoding: 'utf8' }).then(
      (r) => ({ code: 0, out: r.stdout, err: r.stderr }),
      (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: e.code ?? -1, out: e.stdout ?? '', err: e.stderr ?? '' }),
    );

  const urlA = await invite(control, ['--name', 'tablet', '--address', `${h1.switchAddress}:${SWITCH_PORT}`]);
  const urlB = await invite(control, ['--uses', '2', '--address', `${h2.switchAddress}:${SWITCH_PORT}`]);
  const [a, b] = [parseInviteUrl(urlA), parseInviteUrl(urlB)];
  const [idA, idB] = [a.id.toString('hex'), b.id.toString('hex')];

  const listed = await vswitchCli(['--list']);
  assert.equal(listed.code, 0, listed.err);
  assert.match(listed.out, new RegExp(`^${idA}\\s+default\\s+tablet\\s+open\\s+0/1\\s`, 'm'), listed.out);
  assert.match(listed.out, new RegExp(`^${idB}\\s+default\\s+-\\s+open\\s+0/2\\s`, 'm'), listed.out);
  const asJson = await vswitchCli(['--list', '--json']);
  const list = (JSON.parse(asJson.out) as { invites: { id: string; state: string; used: number; uses: number }[] }).invites;
  assert.deepEqual(list.map((i) => [i.id, i.state, i.used, i.uses]).sort(), [[idA, 'open', 0, 1], [idB, 'open', 0, 2]].sort());
  for (const out of [listed.out, asJson.out]) {
    for (const secret of [a.secret, b.secret]) for (const form of ['base64url', 'base64', 'hex'] as const) assert.ok(!out.includes(secret.toString(form)), 'a listing never shows a secret');
  }

  const revoked = await vswitchCli(['--revoke', idA]);
  assert.equal(revoked.code, 0, revoked.err);
  assert.match(revoked.out, new RegExp(`invite ${idA} for network default revoked`));
  await waitForOutput(vswitch, /invite revoked/, 5_000);
  const after = await vswitchCli(['--list']);
  assert.match(after.out, new RegExp(`^${idA}\\s+default\\s+tablet\\s+revoked\\s`, 'm'), after.out);
  assert.match(after.out, new RegExp(`^${idB}\\s+default\\s+-\\s+open\\s`, 'm'), after.out);
  const file = readFileSync(`${allow}.invites`, 'utf8');
  for (const form of ['base64url', 'base64', 'hex'] as const) assert.ok(!file.includes(a.secret.toString(form)), "the invite file no longer holds A's secret");
  const again = await vswitchCli(['--revoke', idA]);
  assert.notEqual(again.code, 0);
  assert.match(again.err, new RegExp(`invite ${idA} was revoked already`));
  const unknown = await vswitchCli(['--revoke', '00112233aabbccdd']);
  assert.notEqual(unknown.code, 0);
  assert.match(unknown.err, /no invite 00112233aabbccdd here \(vswitch invite --list shows them\)/);

  // A's URL now admits nobody; B's still does.
  const refused = join_(h1, 1, urlA);
  assert.notEqual(await waitExit(refused, 15_000), 0);
  assert.match(collect(refused).err(), /refused the invite: it does not know it \(revoked/);
  await waitForOutput(vswitch, /invite refused: no such invite \(never made here, revoked/, 5_000);
  const admitted = join_(h2, 2, urlB);
  await waitForOutput(admitted, JOINED, START_TIMEOUT_MS);
  const lines = readFileSync(allow, 'utf8').split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 2, `B added one line, A none:\n${lines.join('\n')}`);
  const used = await vswitchCli(['--list', '--json']);
  assert.deepEqual((JSON.parse(used.out) as { invites: { id: string; used: number; state: string }[] }).invites.map((i) => [i.id, i.state, i.used]).sort(), [[idA, 'revoked', 0], [idB, 'open', 1]].sort());

  // With no invite left open (B revoked too), A's URL is still refused as unknown, not met with silence.
  assert.equal((await vswitchCli(['--revoke', idB])).code, 0);
  const stillRefused = join_(h1, 1, urlA);
  assert.notEqual(await waitExit(stillRefused, 15_000), 0);
  assert.match(collect(stillRefused).err(), /refused the invite: it does not know it \(revoked/);

  // Bad combinations name the flag.
  const both = await vswitchCli(['--list', '--revoke', idB]);
  assert.equal(both.code, 2);
  assert.match(both.err, /--list and --revoke go one at a time/);
  const mixed = await vswitchCli(['--revoke', idB, '--name', 'x']);
  assert.equal(mixed.code, 2);
  assert.match(mixed.err, /--revoke takes no --name/);
  const badId = await vswitchCli(['--revoke', 'zz']);
  assert.equal(badId.code, 2);
  assert.match(badId.err, /--revoke 'zz': give an invite id of 16 hex digits/);

  for (const c of [admitted, vswitch]) c.kill('SIGTERM');
});
