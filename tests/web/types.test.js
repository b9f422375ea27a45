// The package's TypeScript types (pkg/index.d.ts, pkg/sphinx-chat.d.ts) compile, strictly, with a
// file that uses the package as its README shows (tests/types/usage.ts).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { ROOT } from './lib.js';

test('types: the package types describe how the README uses the package', () => {
  const tsc = path.join(ROOT, 'node_modules/typescript/bin/tsc');
  const r = spawnSync(process.execPath, [tsc, '--noEmit', '--strict', '--target', 'es2022', '--module', 'es2022', '--moduleResolution', 'bundler', '--lib', 'es2022,dom,dom.iterable', path.join(ROOT, 'tests/types/usage.ts')], { encoding: 'utf8' });
  assert.equal(r.status, 0, `tsc failed:\n${r.stdout}${r.stderr}`);
});
