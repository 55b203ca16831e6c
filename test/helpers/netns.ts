// Test side of the lab: the namespace helpers plus the root check tests use.
import type { TestContext } from 'node:test';
import { isRoot } from '../../lab/netns.js';
export * from '../../lab/netns.js';

/**
 * Skip a privileged test with a clear message when not root — except under
 * CI=true, where a skip would hide a failure: there it fails instead.
 */
export function requireRoot(t: TestContext): boolean {
  if (isRoot()) return true;
  const why = 'needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to create network namespaces and TAP devices';
  if (process.env.CI === 'true') throw new Error(`CI=true but this test ${why}: run the suite as root`);
  t.skip(why);
  return false;
}

