// Unit tests of csrc/errors.cc: every native throw is an EtherlinkError with .code
// (and errno/syscall for system calls); a thread whose addon has no class registered
// yet, or a class that throws, gets a plain Error with the same fields.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { EtherlinkError } from '../../lib/core/errors.js';
import { native } from '../../lib/io/native.js';
import { UdpSocket } from '../../lib/io/udp.js';

function thrown(fn: () => unknown): EtherlinkError {
  try {
    fn();
  } catch (err) {
    return err as EtherlinkError;
  }
  assert.fail('expected a throw');
}

test('a failed system call is an EtherlinkError with code, errno and syscall', () => {
  const a = UdpSocket.bind({ address: '127.0.0.1' });
  try {
    const err = thrown(() => UdpSocket.bind({ address: '127.0.0.1', port: a.port }));
    assert.ok(err instanceof EtherlinkError, `an EtherlinkError, got ${String(err)}`);
    assert.equal(err.name, 'EtherlinkError');
    assert.equal(err.code, 'EADDRINUSE');
    assert.equal(err.syscall, 'bind');
    assert.equal(typeof err.errno, 'number');
    assert.ok(err.errno! < 0, 'errno is negative, as Node reports it');
    assert.match(err.message, /another port/);
  } finally {
    a.close();
  }
  const nodev = thrown(() => native().getMtu('etl-no-such0'));
  assert.ok(nodev instanceof EtherlinkError);
  assert.deepEqual([nodev.code, nodev.syscall, nodev.errno], ['ENODEV', 'ioctl', -19]);
});

test('argument problems are EtherlinkErrors with ERR_* codes and no syscall', () => {
  const cases: [() => unknown, string][] = [
    [() => UdpSocket.bind({ address: 'localhost' }), 'ERR_INVALID_ADDRESS'],
    [() => UdpSocket.bind({ address: '127.0.0.1', port: 70000 }), 'ERR_OUT_OF_RANGE'],
    [() => new (native().AeadKey)('rot13' as 'none', new Uint8Array(32)), 'ERR_INVALID_ARG_VALUE'],
    [() => new (native().AeadKey)('none', new Uint16Array(16) as unknown as Uint8Array), 'ERR_INVALID_ARG_TYPE'],
    [() => new (native().LinkWatcher)(() => {}, new Uint32Array(2)), 'ERR_OUT_OF_RANGE'],
    [() => new (native().LinkWatcher)(() => {}, new Float64Array(3) as unknown as Uint32Array), 'ERR_INVALID_ARG_TYPE'],
    [() => native().setMac('lo', Buffer.alloc(5)), 'ERR_INVALID_ARG_VALUE'],
  ];
  for (const [fn, code] of cases) {
    const err = thrown(fn);
    assert.ok(err instanceof EtherlinkError, `${code}: an EtherlinkError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.equal(err.syscall, undefined);
    assert.equal(err.errno, undefined);
  }
  const key = new (native().AeadKey)('none', new Uint8Array(32));
  const err = thrown(() => key.sealBatch(Buffer.alloc(8), Uint32Array.of(0), Uint32Array.of(8), 2, Buffer.alloc(64), Uint32Array.of(0)));
  assert.ok(err instanceof EtherlinkError);
  assert.equal(err.code, 'ERR_OUT_OF_RANGE');
});

// A worker loads its own instance of the addon: its errors depend on its own setErrorClass.
function inWorker(source: string): Promise<Record<string, unknown>> {
  const root = fileURLToPath(new URL('../../..', import.meta.url));
  const code = `
    const { parentPort } = require('node:worker_threads');
    const addon = require('node-gyp-build')(${JSON.stringify(root)});
    const describe = (e) => ({ plain: Object.getPrototypeOf(e) === Error.prototype, name: e.name, code: e.code, errno: e.errno, syscall: e.syscall });
    ${source}`;
  return new Promise((resolve, reject) => {
    const w = new Worker(code, { eval: true });
    w.once('message', resolve);
    w.once('error', reject);
  });
}

test('before setErrorClass, and when the class throws, a plain Error still carries the fields', async () => {
  const unset = await inWorker(`
    try { addon.getMtu('etl-no-such0') } catch (e) { parentPort.postMessage(describe(e)) }`);
  assert.deepEqual(unset, { plain: true, name: 'Error', code: 'ENODEV', errno: -19, syscall: 'ioctl' });
  const broken = await inWorker(`
    addon.setErrorClass(class { constructor() { throw new Error('no') } });
    try { new addon.AeadKey('none', new Uint8Array(31)) } catch (e) { parentPort.postMessage(describe(e)) }`);
  assert.deepEqual(broken, { plain: true, name: 'Error', code: 'ERR_INVALID_KEY', errno: undefined, syscall: undefined });
  // The main thread's class is untouched by the workers.
  assert.ok(thrown(() => native().getMtu('etl-no-such0')) instanceof EtherlinkError);
});
