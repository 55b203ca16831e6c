// Integration tests of the native UDP socket (csrc/udp_linux.cc via lib/udp.ts)
// over loopback only: 127.0.0.1 and ::1 ('::' is bound only to test dual stack).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { UdpSocket } from '../../lib/io/udp.js';
import { ADDR_SLOT } from '../../lib/io/native.js';
import { decodeAddress, encodeAddress } from '../../lib/io/address.js';
import { buffersToBatch, MutableFrameBatch } from '../../lib/core/frames.js';

/** How long a test waits for datagrams that loopback delivers in microseconds. */
const RECEIVE_TIMEOUT_MS = 3000;

interface Received {
  data: Buffer[];
  from: { address: string; port: number; family: 4 | 6 }[];
  batches: number[];
}

/** Collect copies of everything `sock` receives until `n` datagrams arrived. */
function collect(sock: UdpSocket, n: number): Promise<Received> {
  const got: Received = { data: [], from: [], batches: [] };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`received ${got.data.length} of ${n} datagrams`)),
      RECEIVE_TIMEOUT_MS,
    );
    sock.onDatagrams((batch, addrs) => {
      got.batches.push(batch.count);
      for (let i = 0; i < batch.count; i++) {
        const off = batch.offsets[i]!;
        got.data.push(Buffer.from(batch.buf.subarray(off, off + batch.lengths[i]!)));
        got.from.push(decodeAddress(addrs, i * ADDR_SLOT));
      }
      if (got.data.length >= n) {
        clearTimeout(timer);
        resolve(got);
      }
    });
  });
}

/** Datagram i: a recognizable pattern, sizes from 0 bytes to 8000. */
function datagram(i: number): Buffer {
  const size = i % 50 === 49 ? 8000 : (i * 37) % 1400;
  const b = Buffer.alloc(size);
  for (let j = 0; j < size; j++) b[j] = (i * 7 + j) & 0xff;
  return b;
}

function repeatAddress(ip: string, port: number, count: number): Buffer {
  const addrs = Buffer.alloc(count * ADDR_SLOT);
  for (let i = 0; i < count; i++) encodeAddress(ip, port, addrs, i * ADDR_SLOT);
  return addrs;
}

for (const ip of ['127.0.0.1', '::1']) {
  test(`a batch of 200 varied datagrams arrives intact over ${ip}`, async () => {
    const a = UdpSocket.bind({ address: ip });
    const b = UdpSocket.bind({ address: ip });
    try {
      assert.equal(a.family, ip === '::1' ? 6 : 4);
      assert.ok(a.port > 0 && b.port > 0 && a.port !== b.port);
      const frames = Array.from({ length: 200 }, (_, i) => datagram(i));
      const total = frames.reduce((n, f) => n + f.length, 0);
      const done = collect(b, frames.length);
      assert.equal(a.send(buffersToBatch(frames), repeatAddress(ip, b.port, frames.length)), 200);
      const got = await done;

      assert.equal(got.data.length, 200);
      for (let i = 0; i < 200; i++) assert.ok(got.data[i]!.equals(frames[i]!), `datagram ${i}`);
      for (const from of got.from) {
        assert.deepEqual(from, { address: ip, port: a.port, family: a.family });
      }
      assert.ok(got.batches.every((n) => n >= 1 && n <= 64));
      assert.ok(got.batches.length >= 4, 'at most 64 datagrams per batch');

      const tx = a.stats;
      assert.equal(tx.txDatagrams, 200);
      assert.equal(tx.txBytes, total);
      assert.equal(tx.txErrors + tx.txDropped + tx.queueDepth, 0);
      const rx = b.stats;
      assert.equal(rx.rxDatagrams, 200);
      assert.equal(rx.rxBytes, total);
      assert.equal(rx.rxBatches, got.batches.length);
      assert.equal(rx.rxTruncated + rx.rxErrors, 0);
    } finally {
      a.close();
      b.close();
    }
  });
}

test('a dual-stack socket receives from and replies to an IPv4 socket', async () => {
  const dual = UdpSocket.bind({ address: '::' });
  const v4 = UdpSocket.bind({ address: '127.0.0.1' });
  try {
    assert.equal(dual.family, 6);
    assert.equal(v4.family, 4);
    const there = collect(dual, 1);
    assert.equal(v4.sendTo(Buffer.from('hello'), encodeAddress('127.0.0.1', dual.port)), 1);
    const got = await there;
    assert.equal(got.data[0]!.toString(), 'hello');
    assert.deepEqual(got.from[0], { address: '127.0.0.1', port: v4.port, family: 4 });

    // The mapped source address is directly usable as a destination.
    const back = collect(v4, 1);
    assert.equal(dual.sendTo(Buffer.from('world'), encodeAddress('127.0.0.1', v4.port)), 1);
    assert.equal((await back).data[0]!.toString(), 'world');

    // ...and IPv6 still works on the same socket.
    const v6 = UdpSocket.bind({ address: '::1' });
    try {
      const six = collect(dual, 1);
      v6.sendTo(Buffer.from('six'), encodeAddress('::1', dual.port));
      assert.deepEqual((await six).from[0], { address: '::1', port: v6.port, family: 6 });
    } finally {
      v6.close();
    }
  } finally {
    dual.close();
    v4.close();
  }
});

test('an IPv6 destination on an IPv4 socket is a counted txError, not a throw', () => {
  const v4 = UdpSocket.bind({ address: '127.0.0.1' });
  try {
    assert.equal(v4.sendTo(Buffer.from('x'), encodeAddress('::1', 9)), 0);
    assert.equal(v4.stats.txErrors, 1);
    assert.equal(v4.stats.txDatagrams, 0);
  } finally {
    v4.close();
  }
});

test('binding a port in use fails with code EADDRINUSE and says what to do', () => {
  const a = UdpSocket.bind({ address: '127.0.0.1' });
  try {
    assert.throws(
      () => UdpSocket.bind({ address: '127.0.0.1', port: a.port }),
      (err: NodeJS.ErrnoException) => {
        assert.equal(err.code, 'EADDRINUSE');
        assert.equal(err.syscall, 'bind');
        assert.match(err.message, /in use/);
        assert.match(err.message, /another port/);
        return true;
      },
    );
  } finally {
    a.close();
  }
  // Closing releases the port synchronously: it can be bound again at once.
  const again = UdpSocket.bind({ address: '127.0.0.1', port: a.port });
  again.close();
});

test('bad options fail with codes', () => {
  assert.throws(() => UdpSocket.bind({ address: 'localhost' }), { code: 'ERR_INVALID_ADDRESS' });
  assert.throws(() => UdpSocket.bind({ address: '127.0.0.1', port: 70000 }), { code: 'ERR_OUT_OF_RANGE' });
  assert.throws(() => UdpSocket.bind({ address: '127.0.0.1', batchSize: 0 }), { code: 'ERR_OUT_OF_RANGE' });
});

test('close() twice is fine, and a closed socket sends nothing', () => {
  const a = UdpSocket.bind({ address: '127.0.0.1' });
  const port = a.port;
  a.close();
  a.close();
  assert.equal(a.closed, true);
  assert.equal(a.port, port);
  assert.equal(a.sendTo(Buffer.from('x'), encodeAddress('127.0.0.1', port)), 0);
  a.pause();
  a.resume();
  a.unref();
});

test('close() inside the receive callback stops delivery safely', async () => {
  const a = UdpSocket.bind({ address: '127.0.0.1' });
  const b = UdpSocket.bind({ address: '127.0.0.1', batchSize: 8 });
  try {
    let calls = 0;
    let first = 0;
    b.onDatagrams((batch) => {
      calls++;
      first = batch.count;
      b.close();
      b.close();
    });
    const frames = Array.from({ length: 100 }, (_, i) => datagram(i));
    a.send(buffersToBatch(frames), repeatAddress('127.0.0.1', b.port, frames.length));
    await sleep(100);
    assert.equal(calls, 1);
    assert.equal(first, 8);
    assert.equal(b.closed, true);
  } finally {
    a.close();
    b.close();
  }
});

test('datagrams larger than a slot are counted as rxTruncated and skipped', async () => {
  const a = UdpSocket.bind({ address: '127.0.0.1' });
  const b = UdpSocket.bind({ address: '127.0.0.1', slotSize: 100, batchSize: 4 });
  try {
    const frames = [Buffer.alloc(50, 1), Buffer.alloc(101, 2), Buffer.alloc(100, 3), Buffer.alloc(1000, 4)];
    const done = collect(b, 2);
    a.send(buffersToBatch(frames), repeatAddress('127.0.0.1', b.port, frames.length));
    const got = await done;
    assert.deepEqual(
      got.data.map((d) => [d.length, d[0]]),
      [
        [50, 1],
        [100, 3],
      ],
    );
    assert.equal(b.stats.rxTruncated, 2);
    assert.equal(b.stats.rxDatagrams, 2);
  } finally {
    a.close();
    b.close();
  }
});

test('pause() holds datagrams in the kernel until resume()', async () => {
  const a = UdpSocket.bind({ address: '::1' });
  const b = UdpSocket.bind({ address: '::1' });
  try {
    let seen = 0;
    b.onDatagrams((batch) => {
      seen += batch.count;
    });
    b.pause();
    const frames = Array.from({ length: 10 }, (_, i) => datagram(i));
    a.send(buffersToBatch(frames), repeatAddress('::1', b.port, frames.length));
    await sleep(50);
    assert.equal(seen, 0);
    const done = collect(b, 10);
    b.resume();
    assert.equal((await done).data.length, 10);
  } finally {
    a.close();
    b.close();
  }
});

test('a receive slab is reused: the handler sees fresh contents each batch', async () => {
  const a = UdpSocket.bind({ address: '127.0.0.1' });
  const b = UdpSocket.bind({ address: '127.0.0.1', batchSize: 2 });
  try {
    const done = collect(b, 6);
    for (let i = 0; i < 6; i++) a.sendTo(Buffer.from(`msg-${i}`), encodeAddress('127.0.0.1', b.port));
    const got = await done;
    assert.deepEqual(
      got.data.map((d) => d.toString()),
      ['msg-0', 'msg-1', 'msg-2', 'msg-3', 'msg-4', 'msg-5'],
    );
    assert.ok(got.batches.every((n) => n <= 2));
  } finally {
    a.close();
    b.close();
  }
});

test('a bounded load of 200k datagrams completes without crash', async (t) => {
  const TOTAL = 200_000;
  const SIZE = 200;
  // In flight at once: stays well inside the receive buffer so loopback does not drop.
  const WINDOW = 2048;
  const DEADLINE_MS = 10_000;
  const a = UdpSocket.bind({ address: '127.0.0.1' });
  const b = UdpSocket.bind({ address: '127.0.0.1' });
  try {
    const batch = new MutableFrameBatch(Buffer.alloc(64 * SIZE, 0x5a), 64);
    for (let i = 0; i < 64; i++) batch.push(i * SIZE, SIZE);
    const addrs = repeatAddress('127.0.0.1', b.port, 64);
    let sent = 0;
    let received = 0;
    let badLength = 0;
    const pump = (): void => {
      while (sent < TOTAL && sent - received < WINDOW) {
        batch.count = Math.min(64, TOTAL - sent);
        sent += batch.count;
        a.send(batch, addrs);
      }
    };
    const start = process.hrtime.bigint();
    let watchdog: NodeJS.Timeout | undefined;
    const finished = new Promise<void>((resolve) => {
      b.onDatagrams((rx) => {
        received += rx.count;
        for (let i = 0; i < rx.count; i++) if (rx.lengths[i] !== SIZE) badLength++;
        if (received >= TOTAL) resolve();
        else pump(); // sending from inside the receive callback
      });
      // If loopback ever drops, the window stalls: give up after a quiet spell.
      watchdog = setInterval(() => {
        const ms = Number(process.hrtime.bigint() - start) / 1e6;
        if (ms > DEADLINE_MS || (sent === TOTAL && received < TOTAL && ms > 500)) resolve();
      }, 100);
    });
    pump();
    await finished;
    clearInterval(watchdog);
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    t.diagnostic(`${received} datagrams of ${SIZE} B in ${seconds.toFixed(2)} s = ${Math.round(received / seconds)}/s`);
    assert.ok(seconds < DEADLINE_MS / 1000 + 1, 'within the deadline');
    assert.equal(badLength, 0);
    assert.equal(a.stats.txErrors, 0);
    assert.equal(a.stats.txDatagrams + a.stats.txDropped + a.stats.queueDepth, sent);
    assert.equal(b.stats.rxDatagrams, received);
    assert.ok(received >= TOTAL * 0.99, `received ${received} of ${TOTAL}`);
  } finally {
    a.close();
    b.close();
  }
});
