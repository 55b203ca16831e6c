// docs/api is TypeDoc's output for lib/index.ts: every export documented
// (typedoc.json treats a missing doc comment as an error) and the committed
// pages current (`npm run docs` regenerates them).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(fileURLToPath(import.meta.url), '..', '..', '..', '..');
const tmp = mkdtempSync(join(tmpdir(), 'etl-api-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function files(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string): void => {
    for (const f of readdirSync(d)) {
      const p = join(d, f);
      if (statSync(p).isDirectory()) walk(p);
      else out.set(relative(dir, p), readFileSync(p, 'utf8'));
    }
  };
  walk(dir);
  return out;
}

test('every export of the package is documented, and docs/api is what TypeDoc makes of it now', { timeout: 120_000 }, () => {
  const r = spawnSync(process.execPath, [join(root, 'node_modules', 'typedoc', 'bin', 'typedoc'), '--out', tmp], { cwd: root, encoding: 'utf8', timeout: 110_000 });
  assert.equal(r.status, 0, `typedoc failed (a missing doc comment is an error):\n${r.stdout}${r.stderr}`);
  const fresh = files(tmp);
  const committed = files(join(root, 'docs', 'api'));
  assert.ok(fresh.size > 20, `TypeDoc wrote ${fresh.size} pages`);
  const stale = [...fresh.keys()].filter((f) => committed.get(f) !== fresh.get(f));
  const extra = [...committed.keys()].filter((f) => !fresh.has(f));
  assert.deepEqual({ stale, extra }, { stale: [], extra: [] }, 'docs/api is out of date: run npm run docs');
});
