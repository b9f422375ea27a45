// Browser tests of the CPU backend (node --test): headless Debian Chromium, pages served by `sphinx
// serve` (cross-origin isolated). The golden dev model answers with the reference greedy ids on the
// CPU through both engine builds — threaded (a pool of workers on shared memory, relaxed SIMD) and
// single-threaded (SIMD128); `device: 'auto'` on SwiftShader (a software adapter) chooses the CPU and
// says why; a Stop mid-answer ends it at once; and the full-size SPHINX-Tiny-1k (q4 LLM + q8 towers,
// 2.75 GB) loads into the wasm heap and answers a text prompt, its heap peak reported.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ARTIFACTS, SITE, SPHINX, goldenCases, launchBrowser, prepareSite, startServer } from './lib.js';
import { spawnSync } from 'node:child_process';

const TIMEOUT = 30 * 60 * 1000;
const MANIFEST = 'models/golden/manifest.json';
const cases = goldenCases();
let browser;
let server;
const timings = {};

before(async () => {
  prepareSite();
  browser = await launchBrowser();
  server = await startServer(SITE);
});

after(async () => {
  await browser?.close();
  server?.close();
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  fs.writeFileSync(path.join(ARTIFACTS, 'cpu-timings.json'), JSON.stringify(timings, null, 2));
  console.log('timings (CPU backend):', JSON.stringify(timings, null, 2));
});

/** The user message of a golden case. */
const questionOf = (c) => /### Human: ([\s\S]*)\n### Assistant:$/.exec(c.prompt)[1];

/** In the page: load `url` with `options`; returns {info} or {error}. */
function load(page, url, options) {
  return page.evaluate(
    async ({ url, options }) => {
      try {
        window.model = await sphinx.loadSphinx(url, options);
        return { info: window.model.info };
      } catch (e) {
        return { error: { name: e.name, message: e.message } };
      }
    },
    { url, options },
  );
}

/** In the page: greedy ids of one question (with the golden image, if the case has one). */
function ask(page, { image, question, maxTokens = 8, stopAfter = 0 }) {
  return page.evaluate(
    async ({ image, question, maxTokens, stopAfter }) => {
      const encoded = image ? await window.model.encodeImage(await imageDataOf(image)) : undefined;
      const ctl = new AbortController();
      const it = window.model.chat({ messages: [{ role: 'user', content: question }], image: encoded, temperature: 0, maxTokens, signal: ctl.signal });
      const ids = [];
      const t0 = performance.now();
      let stoppedMs = null;
      try {
        for (;;) {
          const { value, done } = await it.next();
          if (done) return { ids, ms: performance.now() - t0, finish: value.finish };
          if (value.tokenId !== null) ids.push(value.tokenId);
          if (stopAfter && ids.length === stopAfter) {
            stoppedMs = performance.now();
            ctl.abort();
          }
        }
      } catch (e) {
        return { ids, error: e.name, afterStopMs: stoppedMs === null ? null : performance.now() - stoppedMs };
      }
    },
    { image, question, maxTokens, stopAfter },
  );
}

test('cpu: the golden greedy ids through the threaded and the single-threaded build; auto on a software adapter chooses the CPU and says why; Stop ends an answer at once', { timeout: TIMEOUT }, async () => {
  for (const [threads, build, isa] of [[2, 'threaded', 'wasm-relaxed-simd'], [1, 'single-threaded', 'wasm-simd128']]) {
    const page = await browser.page(server.url);
    await page.waitForFunction(() => window.harnessReady);
    const loaded = await load(page, MANIFEST, { device: 'cpu', threads });
    assert.ok(!loaded.error, JSON.stringify(loaded.error));
    const d = loaded.info.device;
    assert.equal(d.kind, 'cpu');
    assert.equal(d.cpu.build, build, JSON.stringify(d));
    assert.equal(d.cpu.threads, threads, JSON.stringify(d));
    assert.equal(d.cpu.isa, isa, JSON.stringify(d));
    assert.equal(loaded.info.model.device, 'cpu');
    timings[build] = {};
    for (const name of ['wide', 'tall', 'text']) {
      const c = cases[name];
      const got = await ask(page, { image: c.image ? `golden/${c.image}` : null, question: questionOf(c) });
      assert.deepEqual(got.ids, c.greedy_ids, `${build} ${name}: greedy ids`);
      timings[build][name] = Math.round(got.ms);
    }
    const mem = await page.evaluate(() => window.model.memory());
    assert.ok(mem.wasmHeapBytes > loaded.info.load.totalBytes / 2, JSON.stringify(mem));
    assert.deepEqual(page.errors, []);
    await page.close();
  }

  // auto: SwiftShader is a software adapter, so the CPU runs the model and says why.
  const page = await browser.page(server.url);
  await page.waitForFunction(() => window.harnessReady);
  const auto = await load(page, MANIFEST, { autotune: 'off' });
  assert.ok(!auto.error, JSON.stringify(auto.error));
  assert.equal(auto.info.device.kind, 'cpu', JSON.stringify(auto.info.device));
  assert.match(auto.info.device.reason, /software/);
  assert.equal(auto.info.adapter.software, true);
  const text = await ask(page, { question: questionOf(cases.text) });
  assert.deepEqual(text.ids, cases.text.greedy_ids);
  // Stop after the first token of a long answer: it ends at once, not after max tokens.
  const stopped = await ask(page, { question: questionOf(cases.text), maxTokens: 2000, stopAfter: 1 });
  assert.equal(stopped.error, 'AbortError', JSON.stringify(stopped));
  assert.ok(stopped.ids.length < 50, `${stopped.ids.length} tokens after Stop`);
  assert.ok(stopped.afterStopMs < 2000, `${stopped.afterStopMs} ms from Stop to the end`);
  // the worker is free again at once: the next answer is the golden one
  assert.deepEqual((await ask(page, { question: questionOf(cases.text) })).ids, cases.text.greedy_ids);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('cpu full size: SPHINX-Tiny-1k (3.09 B parameters, q4 LLM + q8 towers, 2.75 GB) loads into the wasm heap and answers a text prompt', { timeout: TIMEOUT }, async () => {
  const dir = path.join(SITE, 'models/full');
  if (!fs.existsSync(path.join(dir, 'manifest.json'))) {
    fs.rmSync(dir, { recursive: true, force: true });
    const r = spawnSync(SPHINX, ['demo-model', '--size', 'full', '--quant', 'q4', '--vision-quant', 'q8', '--out', dir], { stdio: ['ignore', 'ignore', 'inherit'] });
    assert.equal(r.status, 0, 'demo-model --size full');
  }
  const page = await browser.page(server.url);
  await page.waitForFunction(() => window.harnessReady);
  const t0 = Date.now();
  const loaded = await load(page, 'models/full/manifest.json', { device: 'cpu' });
  assert.ok(!loaded.error, JSON.stringify(loaded.error));
  const loadMs = Date.now() - t0;
  assert.equal(loaded.info.model.release, 'SPHINX-Tiny-1k');
  assert.ok(loaded.info.load.totalBytes > 2.5e9, `${loaded.info.load.totalBytes} bytes`);
  const got = await ask(page, { question: 'What is the capital of France?', maxTokens: 4 });
  assert.ok(!got.error, JSON.stringify(got));
  assert.equal(got.ids.length, 4, JSON.stringify(got));
  const mem = await page.evaluate(() => window.model.memory());
  // the weights live in the heap as stored, with room to spare under wasm32's 4 GiB
  assert.ok(mem.wasmHeapBytes >= loaded.info.load.totalBytes - 2 ** 20 && mem.wasmHeapBytes <= 4 * 2 ** 30, JSON.stringify(mem));
  timings.full = { loadMs, load: loaded.info.load, answerMs: Math.round(got.ms), wasmHeapPeakBytes: mem.wasmHeapBytes, device: loaded.info.device };
  assert.deepEqual(page.errors, []);
  await page.evaluate(() => window.model.dispose());
  await page.close();
});
