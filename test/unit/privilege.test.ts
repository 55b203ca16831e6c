// Unit tests of reading capability sets (lib/privilege.ts): pure parsing of /proc/PID/status.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CAP_NET_ADMIN, CAP_NET_BIND_SERVICE, hasCapability, holdsCapabilities, parseCapabilities } from '../../lib/daemon/privilege.js';

const STATUS = `Name:\tnode
Uid:\t999\t999\t999\t999
CapInh:\t0000000000001000
CapPrm:\t0000000000001000
CapEff:\t0000000000001000
CapBnd:\t000001ffffffffff
CapAmb:\t0000000000001000
NoNewPrivs:\t1
`;

test('the Cap* masks of /proc/PID/status, as bigints', () => {
  const c = parseCapabilities(STATUS);
  assert.deepEqual(c, { inheritable: 0x1000n, permitted: 0x1000n, effective: 0x1000n, bounding: 0x1ffffffffffn, ambient: 0x1000n });
  assert.ok(hasCapability(c.effective, CAP_NET_ADMIN), 'bit 12 is CAP_NET_ADMIN');
  assert.ok(!hasCapability(c.effective, CAP_NET_BIND_SERVICE));
  assert.ok(holdsCapabilities(c));
});

test('nothing held after a drop, even with a full bounding set', () => {
  const dropped = STATUS.replace(/^(Cap(?:Inh|Prm|Eff|Amb)):\t\w+$/gm, '$1:\t0000000000000000');
  const c = parseCapabilities(dropped);
  assert.equal(holdsCapabilities(c), false);
  assert.equal(c.bounding, 0x1ffffffffffn, 'the bounding set alone grants nothing');
});

test('this process: readable, and consistent with itself', async () => {
  const { readCapabilities } = await import('../../lib/daemon/privilege.js');
  const c = readCapabilities();
  assert.equal(c.effective & ~c.permitted, 0n, 'effective is a subset of permitted');
});
