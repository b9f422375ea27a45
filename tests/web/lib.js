// Shared helpers of the browser tests: the test site (package, harness page, golden model converted
// to f32, golden images), `sphinx serve` processes with their request logs and test-only faults, and
// headless Debian Chromium on SwiftShader's WebGPU adapter, driven by playwright-core.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const SITE = path.join(ROOT, 'out/web-test');
export const DEMO_SITE = path.join(ROOT, 'out/site');
export const ARTIFACTS = path.join(ROOT, 'out/test-artifacts');
const TARGET = process.env.CARGO_TARGET_DIR || path.join(os.homedir(), '.cache/sphinx-target');
export const SPHINX = process.env.SPHINX_BIN || path.join(TARGET, 'release/sphinx');
export const SHARED = process.env.SPHINX_SHARED || path.join(ROOT, '../shared');
export const GOLDEN = path.join(SHARED, 'golden/sphinx-tiny-1k-dev');
const CHROMIUM = process.env.SPHINX_CHROMIUM || '/usr/bin/chromium';

function run(cmd, args) {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`})`);
}

function copyDir(from, to) {
  fs.rmSync(to, { recursive: true, force: true });
  fs.cpSync(from, to, { recursive: true });
}

/** Builds out/web-test: pkg/ (from `make web`), the harness page, the golden images and the golden
 *  dev model converted to f32 (converted once; reused while its manifest exists). */
export function prepareSite() {
  for (const f of [SPHINX, path.join(ROOT, 'pkg/wasm/sphinx_web_bg.wasm')]) {
    if (!fs.existsSync(f)) throw new Error(`${f} is missing: run \`make build web\` first`);
  }
  if (!fs.existsSync(GOLDEN)) throw new Error(`golden data ${GOLDEN} is missing (set SPHINX_SHARED)`);
  fs.mkdirSync(SITE, { recursive: true });
  copyDir(path.join(ROOT, 'pkg'), path.join(SITE, 'pkg'));
  fs.copyFileSync(path.join(ROOT, 'tests/web/harness.html'), path.join(SITE, 'index.html'));
  fs.mkdirSync(path.join(SITE, 'golden'), { recursive: true });
  for (const f of ['image_wide.png', 'image_tall.png']) fs.copyFileSync(path.join(GOLDEN, f), path.join(SITE, 'golden', f));
  const model = path.join(SITE, 'models/golden');
  if (!fs.existsSync(path.join(model, 'manifest.json'))) {
    run(SPHINX, ['convert', '--from', GOLDEN, '--out', model, '--quant', 'f32', '--shard-mb', '8', '--tokenizer', path.join(SHARED, 'golden/tokenizer-llama2/tokenizer.json')]);
  }
  return { manifest: JSON.parse(fs.readFileSync(path.join(model, 'manifest.json'), 'utf8')), modelDir: model };
}

/** The golden cases (prompt, greedy ids) of reference.json. */
export function goldenCases() {
  const ref = JSON.parse(fs.readFileSync(path.join(GOLDEN, 'reference.json'), 'utf8'));
  return ref.cases;
}

/** Starts `sphinx serve --root root --port 0` with a request log and faults; resolves when it listens. */
export async function startServer(root, { faults = [] } = {}) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const logFile = path.join(os.tmpdir(), `sphinx-serve-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}.jsonl`);
  const args = ['serve', '--root', root, '--port', '0', '--log-requests', logFile];
  for (const f of faults) args.push('--fault', f);
  const child = spawn(SPHINX, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = /at (http:\/\/127\.0\.0\.1:\d+\/)/.exec(out);
      if (m) resolve(m[1]);
    });
    child.on('exit', (code) => reject(new Error(`sphinx serve exited (${code}): ${out}`)));
  });
  return {
    url,
    origin: url.replace(/\/$/, ''),
    /** The request log so far: [{method, path, range, head_bytes, body_bytes, status, sent, fault}]. */
    log() {
      if (!fs.existsSync(logFile)) return [];
      return fs.readFileSync(logFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
    },
    close() {
      child.kill();
      fs.rmSync(logFile, { force: true });
    },
  };
}

/** Headless Chromium with WebGPU on SwiftShader (or, with `webgpu: false`, as it starts on a machine
 *  without a usable GPU: navigator.gpu present, no adapter), in a fresh profile; every request it
 *  makes is recorded in `requests`. */
export async function launchBrowser({ webgpu = true } = {}) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'sphinx-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      ...(webgpu ? ['--enable-unsafe-webgpu', '--use-webgpu-adapter=swiftshader'] : []),
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const requests = [];
  context.on('request', (r) => requests.push({ url: r.url(), method: r.method(), headers: r.headers(), postData: r.postDataBuffer() }));
  return {
    context,
    requests,
    /** A DevTools session of a page (for overrides such as the storage quota). */
    cdp: (page) => context.newCDPSession(page),
    async page(url) {
      const page = await context.newPage();
      const errors = [];
      page.on('pageerror', (e) => errors.push(e));
      page.on('console', (m) => {
        if (process.env.SPHINX_TEST_VERBOSE || m.type() === 'error') console.log(`[page ${m.type()}] ${m.text()}`);
      });
      await page.goto(url);
      page.errors = errors;
      return page;
    },
    async close() {
      await context.close();
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Log lines of one file's responses. */
export const linesFor = (log, file) => log.filter((l) => l.path.split('?')[0].endsWith(`/${file}`));

/** Every request the browser made carried no body and no image bytes (GETs of small URLs). */
export function assertNoImageData(requests, log) {
  for (const r of requests) {
    assert.ok(['GET', 'HEAD', 'OPTIONS'].includes(r.method), `${r.method} ${r.url}`);
    assert.equal(r.postData, null, `request body on ${r.url}`);
    assert.ok(r.url.length < 512, `long URL ${r.url.slice(0, 100)}…`);
    for (const [k, v] of Object.entries(r.headers)) assert.ok(v.length < 1024, `large header ${k} on ${r.url}`);
  }
  for (const l of log) {
    assert.equal(l.body_bytes, 0, `request body on ${l.path}`);
    assert.ok(l.head_bytes < 4096, `request head of ${l.head_bytes} bytes on ${l.path}`);
  }
}


/** Every file under `root`, as URL paths ("/pkg/index.js"). */
export function siteFiles(root) {
  const out = new Set();
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else out.add(`/${path.relative(root, p).split(path.sep).join('/')}`);
    }
  };
  walk(root);
  return out;
}
