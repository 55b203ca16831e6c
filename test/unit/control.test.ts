// The control socket protocol without a daemon: newline-delimited JSON, errors
// as { ok: false }, bounded requests, private socket file, stale socket takeover.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createConnection } from 'node:net';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ControlServer, controlRequest, daemonCommands, CONTROL_MAX_REQUEST_BYTES } from '../../lib/daemon/control.js';

const tmp = mkdtempSync(join(tmpdir(), 'etl-control-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Write raw bytes, collect every response line until the server closes or `lines` arrived. */
function raw(path: string, data: string | Buffer, lines: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const s = createConnection(path);
    let buf = '';
    const done = (): void => {
      s.destroy();
      resolve(buf.split('\n').filter((l) => l !== ''));
    };
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      buf += d;
      if (buf.split('\n').length - 1 >= lines) done();
    });
    s.on('close', done);
    s.on('error', reject);
    s.write(data);
  });
}

test('status, unknown commands, bad JSON, pipelined requests answered in order', async () => {
  const path = join(tmp, 'a', 'b.sock');
  let n = 0;
  const server = await ControlServer.listen(path, daemonCommands({}, () => ({ n: ++n })));
  try {
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(statSync(join(tmp, 'a')).mode & 0o777, 0o700);
    assert.deepEqual(await controlRequest(path, { cmd: 'status' }), { ok: true, status: { n: 1 } });
    const unknown = await controlRequest(path, { cmd: 'reboot' });
    assert.equal(unknown.ok, false);
    assert.match((unknown as { error: string }).error, /unknown command 'reboot': known commands are status, capture-start, capture-stop/);
    const noCapture = await controlRequest(path, { cmd: 'capture-start', file: '/tmp/x.pcap' });
    assert.deepEqual(noCapture, { ok: false, error: 'packet capture is not available in this build', code: 'ENOTSUP' });
    const replies = await raw(path, '{"cmd":"status"}\nnot json\n{"nocmd":1}\n{"cmd":"status"}\n', 4);
    assert.deepEqual(
      replies.map((l) => JSON.parse(l) as { ok: boolean }).map((r) => r.ok),
      [true, false, false, true],
    );
    assert.deepEqual(JSON.parse(replies[3]!), { ok: true, status: { n: 3 } });
  } finally {
    server.close();
  }
  assert.ok(!existsSync(path), 'close() removes the socket');
});

test('capture-start passes file and bounds to startCapture; arguments are checked', async () => {
  const path = join(tmp, 'cap.sock');
  const calls: unknown[] = [];
  const target = {
    startCapture: (file: string, opts: object) => (calls.push([file, opts]), { file, state: 'open' }),
    stopCapture: async () => ({ state: 'closed' }),
  };
  const server = await ControlServer.listen(path, daemonCommands(target, () => ({})));
  try {
    assert.deepEqual(await controlRequest(path, { cmd: 'capture-start', file: '/tmp/a.pcap', maxBytes: 1000, files: 3 }), { ok: true, capture: { file: '/tmp/a.pcap', state: 'open' } });
    assert.deepEqual(calls, [['/tmp/a.pcap', { maxBytes: 1000, files: 3 }]]);
    assert.equal((await controlRequest(path, { cmd: 'capture-start', file: 'relative.pcap' })).ok, false);
    assert.equal((await controlRequest(path, { cmd: 'capture-start', file: '/tmp/a.pcap', maxBytes: -1 })).ok, false);
    assert.deepEqual(await controlRequest(path, { cmd: 'capture-stop' }), { ok: true, capture: { state: 'closed' } });
  } finally {
    server.close();
  }
});

test('a request longer than the bound is refused and the connection closed', async () => {
  const path = join(tmp, 'big.sock');
  const server = await ControlServer.listen(path, daemonCommands({}, () => ({})));
  try {
    const replies = await raw(path, Buffer.alloc(CONTROL_MAX_REQUEST_BYTES + 10, 'x'), 1);
    assert.equal(replies.length, 1);
    assert.match(replies[0]!, /"code":"E2BIG"/);
    assert.equal((await controlRequest(path, { cmd: 'status' })).ok, true, 'other connections are unaffected');
  } finally {
    server.close();
  }
});

test('a stale socket is replaced; a live one is refused with EADDRINUSE; a non-socket is left alone', async () => {
  const path = join(tmp, 'owned.sock');
  // A process that dies without cleaning up leaves its socket file behind.
  const child = spawn(process.execPath, ['-e', "require('node:net').createServer().listen(process.argv[1], () => console.log('up'))", path], { stdio: ['ignore', 'pipe', 'inherit'] });
  await once(child.stdout, 'data');
  await assert.rejects(ControlServer.listen(path, {}), { code: 'EADDRINUSE' }, 'a live owner keeps its socket');
  child.kill('SIGKILL');
  await once(child, 'exit');
  assert.ok(existsSync(path), 'SIGKILL left the socket file');
  await assert.rejects(controlRequest(path, { cmd: 'status' }), { code: 'ECONNREFUSED' });
  const server = await ControlServer.listen(path, daemonCommands({}, () => ({})));
  assert.equal((await controlRequest(path, { cmd: 'status' })).ok, true);
  server.close();

  const file = join(tmp, 'not-a-socket');
  writeFileSync(file, 'keep me');
  await assert.rejects(ControlServer.listen(file, {}), { code: 'EEXIST' });
  assert.equal(readFileSync(file, 'utf8'), 'keep me');
});
