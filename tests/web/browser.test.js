// Browser tests of the sphinx-web package (node --test): headless Debian Chromium, WebGPU on
// SwiftShader, the real `sphinx serve` as the model host. The golden dev model converted to f32 is
// loaded through loadSphinx; each golden image is drawn on a canvas and its ImageData asked "What is
// in the image?" greedily for 8 tokens, which must give the reference greedy ids in order. Then:
// a reload fetches no weight byte; a connection dropped mid-shard and an aborted load resume from the
// stored bytes; a corrupted byte is detected and never used; a short storage quota and a browser
// without a GPU adapter fail with clear messages before any weight is fetched; no request carries image
// data; the OpenAI-shaped call streams the same text as model.chat. (The demo page and the one-tag
// element: demo.test.js, embed.test.js.)

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ARTIFACTS, SITE, assertNoImageData, goldenCases, launchBrowser, linesFor, prepareSite, startServer } from './lib.js';

const TIMEOUT = 15 * 60 * 1000;
let manifest;
let browser;
const cases = goldenCases();
const timings = {};

before(async () => {
  ({ manifest } = prepareSite());
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  fs.writeFileSync(path.join(ARTIFACTS, 'web-timings.json'), JSON.stringify(timings, null, 2));
  console.log('timings (SwiftShader):', JSON.stringify(timings, null, 2));
});

const shardFiles = () => manifest.shards.map((s) => s.file);
const weightFiles = () => [manifest.tokenizer.file, ...shardFiles()];
const MANIFEST = 'models/golden/manifest.json';

/** In the page: load the model, recording progress events; returns the model's info. The tests
 *  of downloads and storage load without autotuning (it would only add SwiftShader's pipeline
 *  compile time); the golden and autotune tests load as a user would (`options: {}`). */
async function loadIn(page, { abortOnNote, options = { autotune: 'off' } } = {}) {
  return page.evaluate(
    async ({ url, abortOnNote, options }) => {
      const events = [];
      const ctl = new AbortController();
      const t0 = performance.now();
      try {
        window.model = await sphinx.loadSphinx(url, {
          device: 'gpu',
          ...options,
          signal: ctl.signal,
          onProgress: (e) => {
            events.push(e);
            if (abortOnNote && e.note?.includes(abortOnNote)) ctl.abort();
          },
        });
      } catch (e) {
        return { error: { name: e.name, message: e.message }, events, ms: performance.now() - t0 };
      }
      return { info: window.model.info, events, ms: performance.now() - t0 };
    },
    { url: MANIFEST, abortOnNote, options },
  );
}

/** In the page: greedy 8 tokens for one golden case; returns the ids, text and timings. */
async function ask(page, c, { maxTokens = 8 } = {}) {
  return page.evaluate(
    async ({ image, question, maxTokens }) => {
      // The page's thread must stay free while the worker computes: record its longest stall.
      let last = performance.now();
      let maxGapMs = 0;
      const timer = setInterval(() => {
        const now = performance.now();
        maxGapMs = Math.max(maxGapMs, now - last);
        last = now;
      }, 50);
      try {
        return await run();
      } finally {
        clearInterval(timer);
      }
      async function run() {
      let encoded;
      if (image) {
        const pixels = await imageDataOf(image);
        encoded = await window.model.encodeImage(pixels);
      }
      const it = window.model.chat({ messages: [{ role: 'user', content: question }], image: encoded, temperature: 0, maxTokens });
      const ids = [];
      let text = '';
      for (;;) {
        const { value, done } = await it.next();
        if (done) return { ids, text, result: value, encodeMs: encoded?.encodeMs ?? null, maxGapMs };
        if (value.tokenId !== null) ids.push(value.tokenId);
        text += value.text;
      }
      }
    },
    { image: c.image ? `golden/${c.image}` : null, question: questionOf(c), maxTokens },
  );
}

/** The user message of a golden case (its prompt is the upstream template around it). */
function questionOf(c) {
  const m = /### Human: ([\s\S]*)\n### Assistant:$/.exec(c.prompt);
  assert.ok(m, `unexpected golden prompt ${JSON.stringify(c.prompt)}`);
  return m[1];
}

test('golden: greedy ids of the f32 dev model through loadSphinx, then a reload fetches no weight', { timeout: TIMEOUT }, async () => {
  const server = await startServer(SITE);
  try {
    const page = await browser.page(server.url);
    await page.waitForFunction(() => window.harnessReady);
    const loaded = await loadIn(page, { options: {} });
    assert.ok(!loaded.error, `load failed: ${JSON.stringify(loaded.error)}`);
    const phases = [...new Set(loaded.events.map((e) => e.phase))];
    for (const p of ['download', 'upload', 'compile']) assert.ok(phases.includes(p), `no ${p} progress (${phases})`);
    const last = loaded.events.filter((e) => e.phase === 'download').at(-1);
    assert.equal(last.loaded, last.total);
    assert.equal(loaded.info.load.downloadedBytes, loaded.info.load.totalBytes);
    timings.adapter = loaded.info.adapter;
    // SwiftShader is Chromium's fallback adapter: the kernels for software adapters are chosen.
    assert.equal(loaded.info.adapter.software, true, JSON.stringify(loaded.info.adapter));
    timings.loadColdMs = Math.round(loaded.ms);
    timings.coldPhasesMs = { download: Math.round(loaded.info.load.downloadMs), upload: Math.round(loaded.info.load.uploadMs), compile: Math.round(loaded.info.load.compileMs) };
    timings.wasmHeapBytes = loaded.info.load.wasmHeapBytes;
    timings.modelBytes = loaded.info.load.totalBytes;

    for (const name of ['wide', 'tall', 'text']) {
      const c = cases[name];
      const t0 = Date.now();
      const got = await ask(page, c);
      timings[name] = {
        encodeMs: got.encodeMs && Math.round(got.encodeMs),
        firstTokenMs: Math.round(got.result.firstTokenMs),
        chatMs: Math.round(got.result.totalMs),
        wallMs: Date.now() - t0,
        pageThreadMaxStallMs: Math.round(got.maxGapMs),
      };
      assert.deepEqual(got.ids, c.greedy_ids, `${name}: greedy ids`);
      assert.ok(got.maxGapMs < 3000, `${name}: the page's thread stalled ${got.maxGapMs} ms`);
      assert.equal(got.result.finish, 'length');
    }
    assert.deepEqual(page.errors, []);

    // Reload: everything comes from OPFS.
    const mark = server.log().length;
    await page.reload();
    await page.waitForFunction(() => window.harnessReady);
    const warm = await loadIn(page, { options: {} });
    assert.ok(!warm.error, `warm load failed: ${JSON.stringify(warm.error)}`);
    timings.loadWarmMs = Math.round(warm.ms);
    assert.equal(warm.info.load.downloadedBytes, 0);
    const after = server.log().slice(mark);
    for (const f of weightFiles()) assert.deepEqual(linesFor(after, f), [], `${f} fetched again after the reload`);
    const text = await ask(page, cases.text);
    assert.deepEqual(text.ids, cases.text.greedy_ids, 'text case after the reload');
    assertNoImageData(browser.requests, server.log());
    await page.close();
  } finally {
    server.close();
  }
});

test('resume: a dropped connection and an aborted load continue from the stored bytes', { timeout: TIMEOUT }, async () => {
  assert.ok(manifest.shards.length >= 2, 'the test model should have several shards');
  const [first, second] = manifest.shards;
  const dropFirst = Math.floor(first.bytes / 3);
  const dropSecond = Math.floor(second.bytes / 2);
  const url = (s) => `/${path.posix.join('models/golden', s.file)}`;
  const server = await startServer(SITE, { faults: [`drop-after=${url(first)}:${dropFirst}`, `drop-after=${url(second)}:${dropSecond}`] });
  const resumedFrom = (lines) => {
    // every request for a file starts where the bytes received before it end
    const starts = lines.map((l) => Number(/bytes=(\d+)-/.exec(l.range ?? 'bytes=0-')[1]));
    for (let i = 1; i < lines.length; i++) {
      const before = lines.slice(0, i).reduce((s, l) => s + l.sent, 0);
      assert.equal(starts[i], before, `request ${i} restarts at ${starts[i]}, ${before} bytes were sent before: ${JSON.stringify(lines)}`);
    }
  };
  try {
    const page = await browser.page(server.url);
    await page.waitForFunction(() => window.harnessReady);
    // 1. The first shard's connection drops at a third: the load resumes it by itself. The second's
    //    drops at half: the test aborts the load there.
    const aborted = await loadIn(page, { abortOnNote: second.file });
    assert.equal(aborted.error?.name, 'AbortError', JSON.stringify(aborted.error));
    assert.ok(aborted.events.some((e) => e.note?.includes(`${first.file}`) && e.note.includes('resuming')), 'no resume of the first shard');
    let lines = linesFor(server.log(), first.file);
    assert.equal(lines.length, 2, JSON.stringify(lines));
    assert.equal(lines[0].sent, dropFirst);
    assert.equal(lines.reduce((s, l) => s + l.sent, 0), first.bytes, 'first shard bytes sent over both requests');
    resumedFrom(lines);
    const stored = await page.evaluate((u) => sphinx.cachedBytes(u), MANIFEST);
    assert.equal(stored, manifest.tokenizer.bytes + first.bytes + dropSecond, 'bytes stored after the abort');
    // 2. Load again: only the rest of the second shard (and the later shards) are fetched.
    const mark = server.log().length;
    const loaded = await loadIn(page);
    assert.ok(!loaded.error, `load failed: ${JSON.stringify(loaded.error)}`);
    const again = server.log().slice(mark);
    assert.deepEqual(linesFor(again, manifest.tokenizer.file), [], 'tokenizer fetched again');
    assert.deepEqual(linesFor(again, first.file), [], 'first shard fetched again');
    lines = linesFor(server.log(), second.file);
    assert.equal(lines.length, 2, JSON.stringify(lines));
    assert.equal(lines[1].range, `bytes=${dropSecond}-`);
    assert.equal(lines.reduce((s, l) => s + l.sent, 0), second.bytes, 'second shard bytes sent over both loads');
    assert.equal(loaded.info.load.downloadedBytes, manifest.shards.slice(1).reduce((s, f) => s + f.bytes, 0) - dropSecond);
    const text = await ask(page, cases.text);
    assert.deepEqual(text.ids, cases.text.greedy_ids);
    assertNoImageData(browser.requests, server.log());
    await page.close();
  } finally {
    server.close();
  }
});

test('corruption: a flipped byte is detected, the shard refetched, the bad bytes never used', { timeout: TIMEOUT }, async () => {
  const shard = manifest.shards.at(-1);
  const file = `/${path.posix.join('models/golden', shard.file)}`;
  const offset = Math.floor(shard.bytes / 2);
  const once = await startServer(SITE, { faults: [`corrupt=${file}:${offset}:1`] });
  try {
    const page = await browser.page(once.url);
    await page.waitForFunction(() => window.harnessReady);
    const loaded = await loadIn(page);
    assert.ok(!loaded.error, `load failed: ${JSON.stringify(loaded.error)}`);
    const lines = linesFor(once.log(), shard.file);
    assert.equal(lines.length, 2, JSON.stringify(lines));
    assert.ok(lines[0].fault?.includes('corrupt'));
    assert.equal(lines[1].range, 'bytes=0-');
    assert.ok(loaded.events.some((e) => e.note?.includes('SHA-256 mismatch')));
    const text = await ask(page, cases.text);
    assert.deepEqual(text.ids, cases.text.greedy_ids, 'answer after the refetch');
    await page.close();
  } finally {
    once.close();
  }
  // A copy that stays corrupt: the load fails with a clear message and stores nothing of it.
  const always = await startServer(SITE, { faults: [`corrupt=${file}:${offset}:100`] });
  try {
    const page = await browser.page(always.url);
    await page.waitForFunction(() => window.harnessReady);
    const loaded = await loadIn(page);
    assert.match(loaded.error?.message ?? '', /SHA-256 mismatch.*corrupt/);
    const names = await page.evaluate(async () => {
      const root = await navigator.storage.getDirectory();
      const out = [];
      for await (const [key, dir] of (await root.getDirectoryHandle('sphinx-cache')).entries()) {
        for await (const [name] of dir.entries()) out.push(`${key}/${name}`);
      }
      return out;
    });
    assert.ok(!names.some((n) => n.includes(shard.sha256)), `corrupt shard kept: ${names}`);
    await page.close();
  } finally {
    always.close();
  }
});

test('limits: storage that fills up and a browser without a GPU adapter fail clearly; the cache stays usable', { timeout: TIMEOUT }, async () => {
  const server = await startServer(SITE);
  try {
    const page = await browser.page(server.url);
    await page.waitForFunction(() => window.harnessReady);
    await page.evaluate((u) => sphinx.clearCache(u), MANIFEST);
    // The origin's quota cut to a third of the model by DevTools' override. Chromium's estimate()
    // does not reflect it, so the check before downloading passes and the storage fills up while
    // writing (where exactly depends on how Chromium reserves file capacity): the load must stop at
    // once with a clear error naming the file, fetch nothing after it, and keep what it stored.
    const cdp = await browser.cdp(page);
    const files = weightFiles();
    const total = manifest.tokenizer.bytes + manifest.shards.reduce((s, f) => s + f.bytes, 0);
    const quota = Math.floor(total / 3);
    await cdp.send('Storage.overrideQuotaForOrigin', { origin: server.origin, quotaSize: quota });
    const mark = server.log().length;
    const short = await loadIn(page);
    assert.equal(short.error?.name, 'QuotaExceededError', JSON.stringify(short.error));
    const m = /^not enough browser storage for this model: storing (\S+) failed at byte \d+ of \d+ \(.*\)\. The bytes stored so far are kept/.exec(short.error.message);
    assert.ok(m && files.includes(m[1]), short.error.message);
    const fetched = server.log().slice(mark);
    assert.equal(linesFor(fetched, m[1]).length, 1, 'a full storage is not retried');
    for (const f of files.slice(files.indexOf(m[1]) + 1)) assert.deepEqual(linesFor(fetched, f), [], `${f} fetched after the storage filled up`);
    const kept = await page.evaluate((u) => sphinx.cachedBytes(u), MANIFEST);
    assert.ok(kept > 0 && kept <= quota, `${kept} bytes stored under a ${quota}-byte quota`);
    // The quota back: the same page loads and answers.
    await cdp.send('Storage.overrideQuotaForOrigin', { origin: server.origin });
    const loaded = await loadIn(page);
    assert.ok(!loaded.error, `load failed: ${JSON.stringify(loaded.error)}`);
    assert.equal(loaded.info.load.downloadedBytes, loaded.info.load.totalBytes - kept, 'the stored bytes were fetched again');
    const text = await ask(page, cases.text);
    assert.deepEqual(text.ids, cases.text.greedy_ids);
    await page.close();
  } finally {
    server.close();
  }

  const noGpu = await launchBrowser({ webgpu: false });
  const bare = await startServer(SITE);
  try {
    const page = await noGpu.page(bare.url);
    await page.waitForFunction(() => window.harnessReady);
    const loaded = await loadIn(page);
    assert.match(loaded.error?.message ?? '', /WebGPU is available but no GPU adapter was found/, JSON.stringify(loaded.error));
    for (const f of ['manifest.json', ...weightFiles()]) assert.deepEqual(linesFor(bare.log(), f), [], `${f} fetched without a GPU`);
    await page.close();
  } finally {
    bare.close();
    await noGpu.close();
  }
});

test('openai: chat.completions.create with an image_url data URL streams the same text as model.chat', { timeout: TIMEOUT }, async () => {
  const server = await startServer(SITE);
  try {
    const page = await browser.page(server.url);
    await page.waitForFunction(() => window.harnessReady);
    const loaded = await loadIn(page);
    assert.ok(!loaded.error, `load failed: ${JSON.stringify(loaded.error)}`);
    const c = cases.wide;
    const dataUrl = `data:image/png;base64,${fs.readFileSync(path.join(SITE, 'golden', c.image)).toString('base64')}`;
    const got = await page.evaluate(
      async ({ image, dataUrl, question }) => {
        const model = window.model;
        const encoded = await model.encodeImage(await imageDataOf(image));
        let chatText = '';
        for await (const t of model.chat({ messages: [{ role: 'user', content: question }], image: encoded, temperature: 0, maxTokens: 8 })) chatText += t.text;
        const request = {
          model: 'sphinx-tiny-1k-dev',
          messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: dataUrl } }, { type: 'text', text: question }] }],
          temperature: 0,
          max_tokens: 8,
        };
        const chunks = [];
        const stream = await model.openai.chat.completions.create({ ...request, stream: true, stream_options: { include_usage: true } });
        for await (const chunk of stream) chunks.push(chunk);
        const whole = await model.openai.chat.completions.create(request);
        const errorOf = (p) => p.then(() => null, (e) => ({ name: e.name, status: e.status, error: e.error }));
        const empty = await errorOf(model.openai.chat.completions.create({ messages: [] }));
        const foreign = await errorOf(model.openai.chat.completions.create({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/cat.png' } }] }] }));
        const twoImages = await errorOf(model.openai.chat.completions.create({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: dataUrl } }, { type: 'image_url', image_url: { url: dataUrl + '=' } }] }] }));
        // A system message replaces the template's system line; a stop string ends the answer early.
        const stopAt = chatText.trim().split(/\s+/)[1] ?? chatText.slice(2, 4);
        const stopped = await model.openai.chat.completions.create({ ...request, stop: [stopAt] });
        const system = await model.openai.chat.completions.create({ ...request, max_tokens: 1, messages: [{ role: 'system', content: 'Answer briefly.' }, ...request.messages] });
        return { chatText, chunks, whole, empty, foreign, twoImages, stopAt, stopped, system };
      },
      { image: `golden/${c.image}`, dataUrl, question: questionOf(c) },
    );
    const streamed = got.chunks.map((k) => k.choices[0]?.delta?.content ?? '').join('');
    assert.ok(got.chatText.length > 0);
    assert.equal(streamed, got.chatText, 'streamed text = model.chat text');
    assert.deepEqual(got.chunks[0].choices[0].delta, { role: 'assistant', content: '' });
    for (const k of got.chunks) {
      assert.equal(k.object, 'chat.completion.chunk');
      assert.equal(k.id, got.chunks[0].id);
      assert.equal(k.model, 'sphinx-tiny-1k-dev');
    }
    const finishes = got.chunks.map((k) => k.choices[0]?.finish_reason).filter(Boolean);
    assert.deepEqual(finishes, ['length']);
    const usageChunk = got.chunks.at(-1);
    assert.deepEqual(usageChunk.choices, []);
    assert.equal(usageChunk.usage.completion_tokens, 8);
    assert.equal(got.whole.object, 'chat.completion');
    assert.equal(got.whole.choices[0].message.role, 'assistant');
    assert.equal(got.whole.choices[0].message.content, got.chatText);
    assert.equal(got.whole.choices[0].finish_reason, 'length');
    const { usage } = got.whole;
    assert.equal(usage.completion_tokens, 8);
    assert.ok(usage.prompt_tokens > 8, JSON.stringify(usage));
    assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
    assert.deepEqual(usageChunk.usage, usage);
    for (const [e, param] of [[got.empty, 'messages'], [got.foreign, 'image_url'], [got.twoImages, 'messages']]) {
      assert.equal(e?.status, 400, JSON.stringify(e));
      assert.equal(e.name, 'BadRequestError');
      assert.equal(e.error.type, 'invalid_request_error');
      assert.equal(e.error.param, param, JSON.stringify(e));
    }
    const cut = got.chatText.indexOf(got.stopAt);
    assert.ok(cut >= 0);
    assert.equal(got.stopped.choices[0].message.content, got.chatText.slice(0, cut), `stop at ${JSON.stringify(got.stopAt)}`);
    assert.equal(got.stopped.choices[0].finish_reason, 'stop');
    assert.ok(got.stopped.usage.completion_tokens < 8, JSON.stringify(got.stopped.usage));
    // "Answer briefly." replaces the 29-token upstream system line.
    assert.ok(got.system.usage.prompt_tokens < usage.prompt_tokens - 20, `system prompt: ${JSON.stringify(got.system.usage)} vs ${JSON.stringify(usage)}`);
    assert.deepEqual(page.errors, []);
    assertNoImageData(browser.requests, server.log());
    await page.close();
  } finally {
    server.close();
  }
});

test('autotune: the first load tunes and stores, the next reuses (0 ms), another engine version retunes; every variant passes', { timeout: TIMEOUT }, async () => {
  const server = await startServer(SITE);
  const stored = (page) =>
    page.evaluate(async () => {
      const top = await (await navigator.storage.getDirectory()).getDirectoryHandle('sphinx-cache');
      return (await (await top.getFileHandle('autotune.json')).getFile()).text();
    });
  try {
    const page = await browser.page(server.url);
    await page.waitForFunction(() => window.harnessReady);
    const first = await loadIn(page, { options: {} });
    assert.ok(!first.error, `load failed: ${JSON.stringify(first.error)}`);
    const a = first.info.load.autotune;
    assert.equal(a.mode, 'cached');
    // Every shape decided now: timed, or too small to matter (or past the time budget), none cached.
    assert.ok(a.shapes > 0 && a.tuned >= 1 && a.tuned + a.small + a.skipped === a.shapes && a.cached === 0, JSON.stringify(a));
    assert.ok(first.info.load.autotuneMs > 0);
    assert.ok(first.events.some((e) => e.phase === 'autotune'), 'no autotune progress');
    timings.autotune = { first: a, adapterTimestamps: first.info.adapter.timestamps };
    const cache = JSON.parse(await stored(page));
    const choices = Object.values(cache.adapters)[0];
    // Stored: the shapes timed and those too small to time; the ones past the budget are not.
    assert.equal(Object.keys(choices).length, a.tuned + a.small, JSON.stringify({ a, cache }));
    // Every variant the tuner may pick runs correctly in this browser's WebGPU.
    const selfTest = await page.evaluate(() => window.model.kernelSelfTest());
    assert.ok(selfTest.runs >= 4 * 4 * 8, JSON.stringify(selfTest));
    assert.deepEqual(selfTest.failures, []);
    timings.autotune.selfTest = selfTest;
    // With the tuned kernels the answer is still the golden one.
    const text = await ask(page, cases.text);
    assert.deepEqual(text.ids, cases.text.greedy_ids);
    // A reload takes every stored choice and times only the shapes the budget cut off (each
    // reload times at least one of them); once none is left, a load times nothing.
    let [b, second, left] = [null, null, a.skipped];
    for (let reload = 0; reload <= a.skipped; reload++) {
      await page.reload();
      await page.waitForFunction(() => window.harnessReady);
      second = await loadIn(page, { options: {} });
      b = second.info.load.autotune;
      assert.equal(b.cached, a.shapes - left, JSON.stringify({ a, b }));
      if (left === 0) break;
      assert.ok(b.tuned + b.small >= 1 && b.tuned + b.small + b.skipped === left, JSON.stringify({ a, b }));
      left = b.skipped;
    }
    assert.ok(b.tuned === 0 && b.skipped === 0 && b.cached === a.shapes, JSON.stringify({ a, b }));
    assert.equal(second.info.load.autotuneMs, 0);
    // Choices stored by another engine version are not used: the load tunes again.
    await page.evaluate(async () => {
      const top = await (await navigator.storage.getDirectory()).getDirectoryHandle('sphinx-cache');
      const file = await top.getFileHandle('autotune.json');
      const cache = JSON.parse(await (await file.getFile()).text());
      cache.engine = '0.0.1+0000000000000000';
      const w = await file.createWritable();
      await w.write(JSON.stringify(cache));
      await w.close();
    });
    await page.evaluate(() => window.model.dispose());
    const third = await loadIn(page, { options: {} });
    const c = third.info.load.autotune;
    assert.ok(c.cached === 0 && c.tuned >= 1 && c.tuned + c.small + c.skipped === a.shapes, JSON.stringify(c));
    assert.notEqual(JSON.parse(await stored(page)).engine, '0.0.1+0000000000000000');
    // autotune: 'off' times nothing and uses no stored choice.
    await page.evaluate(() => window.model.dispose());
    const off = await loadIn(page, { options: { autotune: 'off' } });
    assert.deepEqual([off.info.load.autotune.tuned, off.info.load.autotune.cached], [0, 0]);
    assert.equal(off.info.model.precision, 'f32', 'SwiftShader has no shader-f16: auto is f32');
    assert.deepEqual(page.errors, []);
    await page.close();
  } finally {
    server.close();
  }
});

test('trust: a GPU device lost mid-answer fails clearly and the next load works; a manifest naming foreign paths is refused before any fetch', { timeout: TIMEOUT }, async () => {
  // A manifest whose shards point out of its folder (and one at an absolute URL).
  const evil = path.join(SITE, 'models/evil');
  fs.mkdirSync(evil, { recursive: true });
  const m = JSON.parse(fs.readFileSync(path.join(SITE, 'models/golden/manifest.json'), 'utf8'));
  const variants = { 'up.json': `../golden/${m.shards[0].file}`, 'abs.json': `http://127.0.0.1:9/${m.shards[0].file}` };
  for (const [name, file] of Object.entries(variants)) {
    const bad = structuredClone(m);
    bad.shards[0].file = file;
    fs.writeFileSync(path.join(evil, name), JSON.stringify(bad));
  }
  const server = await startServer(SITE);
  try {
    const page = await browser.page(server.url);
    await page.waitForFunction(() => window.harnessReady);
    for (const [name, file] of Object.entries(variants)) {
      const mark = server.log().length;
      const r = await page.evaluate(async (url) => {
        try {
          await sphinx.loadSphinx(url, { device: 'gpu', autotune: 'off' });
          return null;
        } catch (e) {
          return e.message;
        }
      }, `models/evil/${name}`);
      assert.ok(r && r.includes(file), `${name}: ${r}`);
      const fetched = server.log().slice(mark).map((l) => l.path).filter((p) => p.startsWith('/models/'));
      assert.deepEqual(fetched, [`/models/evil/${name}`], `${name}: fetched ${fetched}`);
    }
    // A device lost in the middle of a session: the next request says so; a new load works.
    const loaded = await loadIn(page);
    assert.ok(!loaded.error, JSON.stringify(loaded.error));
    // Lost mid-answer: the device goes at the first token; the answer stops with the reason.
    const lost = await page.evaluate(async () => {
      let tokens = 0;
      let losing = null;
      try {
        for await (const _ of window.model.chat({ messages: [{ role: 'user', content: 'Hi' }], temperature: 0, maxTokens: 32 })) {
          tokens += 1;
          losing ??= window.model.loseDevice();
        }
        return { tokens, message: null };
      } catch (e) {
        await losing;
        return { tokens, message: e.message };
      }
    });
    assert.ok(lost.tokens >= 1 && lost.tokens < 32, `tokens before the loss: ${lost.tokens}`);
    assert.match(lost.message ?? '', /device lost.*Load the model again/i);
    const after = await page.evaluate(() => window.model.gpuMemory().then(() => null, (e) => e.message));
    assert.match(after ?? '', /device lost.*Load the model again/i, 'later calls say so too');
    assert.equal(await page.evaluate((msg) => window.sphinx.explain(new Error(msg)).kind, lost.message), 'device-lost');
    await page.evaluate(() => window.model.dispose());
    const again = await loadIn(page);
    assert.ok(!again.error, JSON.stringify(again.error));
    const text = await ask(page, cases.text);
    assert.deepEqual(text.ids, cases.text.greedy_ids, 'after the lost device, a new load answers');
    await page.close();
  } finally {
    server.close();
  }
});

// ---- a CDN and a caller that lie (issue 18, rows B1–B5) ------------------------------------------

/** In the page: whether it still runs script and answers (the page is alive). */
const alive = (page) => page.evaluate(() => new Promise((r) => setTimeout(() => r(window.harnessReady === true), 0)));

test('B1: a CDN answering 200 with a short HTML page fails after a bounded number of requests per file; a 200 to a Range request keeps the stored bytes', { timeout: TIMEOUT }, async () => {
  const [first, second] = manifest.shards;
  const url = (s) => `/${path.posix.join('models/golden', s.file)}`;
  const half = Math.floor(second.bytes / 2);
  // Every request for the first shard (six: the first try and five retries) gets the error page;
  // the second shard's first response is cut at half and its resumed Range request gets the page.
  const server = await startServer(SITE, { faults: [`error-page=${url(first)}:200:6`, `drop-after=${url(second)}:${half}:1`, `error-page=${url(second)}:200:1`] });
  try {
    const page = await browser.page(server.url);
    await page.waitForFunction(() => window.harnessReady);
    const failed = await loadIn(page);
    const fileUrl = `${server.url}${url(first).slice(1)}`;
    assert.equal(failed.error?.name, 'Error', JSON.stringify(failed.error));
    assert.ok(failed.error.message.startsWith(`${first.file} (${fileUrl}): download failed: 6 requests failed, the last with: the server answered the request for bytes 0- with 200 and a `), failed.error.message);
    assert.match(failed.error.message, /-byte body \(text\/html; charset=utf-8\), not the \d+-byte file$/);
    assert.equal(await page.evaluate((m) => sphinx.explain(new Error(m)).kind, failed.error.message), 'network');
    const lines = linesFor(server.log(), first.file);
    assert.equal(lines.length, 6, `requests for ${first.file}: ${JSON.stringify(lines)}`);
    assert.ok(lines.every((l) => l.status === 200 && l.fault === 'error-page 200'), JSON.stringify(lines));
    assert.deepEqual(linesFor(server.log(), second.file), [], 'the load went on past a failed file');
    assert.equal(failed.events.filter((e) => e.note?.includes('resuming at byte 0')).length, 5);
    assert.equal(await alive(page), true);
    // The next load of the same URL: the first shard is honest now; the second is cut at half, its
    // resumed request answered 200 with the page (a failure that keeps the half stored), then 206.
    const loaded = await loadIn(page);
    assert.ok(!loaded.error, `load failed: ${JSON.stringify(loaded.error)}`);
    const two = linesFor(server.log(), second.file);
    assert.deepEqual(two.map((l) => [l.range, l.status, l.fault]), [['bytes=0-', 206, 'drop-after ' + half], [`bytes=${half}-`, 200, 'error-page 200'], [`bytes=${half}-`, 206, null]], JSON.stringify(two));
    // the tokenizer was stored by the failed load; no byte of the second shard is fetched twice
    assert.equal(loaded.info.load.downloadedBytes, loaded.info.load.totalBytes - manifest.tokenizer.bytes);
    const text = await ask(page, cases.text);
    assert.deepEqual(text.ids, cases.text.greedy_ids);
    assert.deepEqual(page.errors, []);
    await page.close();
  } finally {
    server.close();
  }
});

test('B2–B5: a manifest cut short, huge and lying arguments, a prompt past the context and a disposed model: clear errors, the page alive, the next honest call answers', { timeout: TIMEOUT }, async () => {
  const server = await startServer(SITE, { faults: ['drop-after=/models/golden/manifest.json:100:1'] });
  try {
    const page = await browser.page(server.url);
    await page.waitForFunction(() => window.harnessReady);
    // B5: the manifest's connection dropped: the error names the manifest and its URL.
    const cut = await loadIn(page);
    assert.match(cut.error?.message ?? '', new RegExp(`^manifest ${server.url}models/golden/manifest\\.json: the connection dropped while it was read \\(`), JSON.stringify(cut.error));
    assert.equal(await page.evaluate((m) => sphinx.explain(new Error(m)).kind, cut.error.message), 'network');
    assert.equal(await alive(page), true);
    const loaded = await loadIn(page);
    assert.ok(!loaded.error, `the next load failed: ${JSON.stringify(loaded.error)}`);
    const c = cases.wide;
    const dataUrl = `data:image/png;base64,${fs.readFileSync(path.join(SITE, 'golden', c.image)).toString('base64')}`;
    const got = await page.evaluate(
      async ({ dataUrl, question }) => {
        const model = window.model;
        const errorOf = (p) => p.then(() => null, (e) => ({ name: e.name, message: e.message, status: e.status, error: e.error }));
        const answer = async (content) => {
          let text = '';
          const it = model.chat({ messages: [{ role: 'user', content }], temperature: 0, maxTokens: 2 });
          for (;;) {
            const { value, done } = await it.next();
            if (done) return { text, promptTokens: value.promptTokens };
            text += value.text;
          }
        };
        // B5: maxTokens past any context, in words.
        const huge = await errorOf(model.chat({ messages: [{ role: 'user', content: 'Hi' }], maxTokens: 2 ** 40 }).next());
        // B4: a lone surrogate is sent as the browser sends text: U+FFFD.
        const lone = await answer('a\uD800b');
        const replaced = await answer('a\uFFFDb');
        // B3: a prompt past the context, and 1000 messages.
        const create = (r) => model.openai.chat.completions.create({ temperature: 0, max_tokens: 2, ...r });
        const long = await errorOf(create({ messages: [{ role: 'user', content: 'word '.repeat(5000) }] }));
        const many = await errorOf(create({ messages: Array.from({ length: 999 }, (_, i) => ({ role: i % 2 ? 'assistant' : 'user', content: `message ${i}` })) }));
        // Stop texts past the engine's rule (at most 4): a 400 on `stop`, from the engine's check.
        const stops = await errorOf(create({ stop: ['a', 'b', 'c', 'd', 'e'], messages: [{ role: 'user', content: 'Hi' }] }));
        // B2: a 200 MB data: URL is refused before it is decoded.
        const bigUrl = `data:image/png;base64,${'A'.repeat(200_000_000)}`;
        const big = await errorOf(create({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: bigUrl } }, { type: 'text', text: question }] }] }));
        // The honest calls answer, and usage counts the image's positions.
        const withImage = await create({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: dataUrl } }, { type: 'text', text: question }] }] });
        const textOnly = await create({ messages: [{ role: 'user', content: question }] });
        const imageWords = model.info.model.imageWords;
        await model.dispose();
        const disposed = await errorOf(create({ messages: [{ role: 'user', content: 'Hi' }] }));
        const disposedStream = await errorOf(create({ stream: true, messages: [{ role: 'user', content: 'Hi' }] }).then(async (s) => { for await (const _ of s); }));
        return { huge, lone, replaced, long, many, stops, big, withImage: withImage.usage, textOnly: textOnly.usage, imageWords, disposed, disposedStream };
      },
      { dataUrl, question: questionOf(c) },
    );
    assert.equal(got.huge?.name, 'TypeError', JSON.stringify(got.huge));
    assert.equal(got.huge.message, 'chat: maxTokens must be a whole number from 1 to 65536 (the longest context), not 1099511627776');
    assert.deepEqual(got.lone, got.replaced, 'a lone surrogate reads as U+FFFD');
    assert.deepEqual([got.stops?.status, got.stops?.error?.param], [400, 'stop'], JSON.stringify(got.stops));
    assert.match(got.stops.error.message, /up to 4 of them/);
    for (const [e, tokens] of [[got.long, /resulted in \d{4,} tokens\. Please reduce/], [got.many, /resulted in \d{4,} tokens\. Please reduce/]]) {
      assert.equal(e?.status, 400, JSON.stringify(e));
      assert.equal(e.name, 'BadRequestError');
      assert.deepEqual([e.error.type, e.error.code, e.error.param], ['invalid_request_error', 'context_length_exceeded', 'messages']);
      assert.match(e.error.message, /^This model's maximum context length is 4096 tokens\. However, your messages/);
      assert.match(e.error.message, tokens);
    }
    assert.equal(got.big?.status, 400, JSON.stringify(got.big));
    assert.equal(got.big.error.param, 'image_url');
    assert.match(got.big.error.message, /^image_url: the data: URL is 200000022 characters; the limit is 134217728 bytes of image file/);
    assert.equal(got.withImage.prompt_tokens, got.textOnly.prompt_tokens + got.imageWords, `usage ${JSON.stringify(got)}`);
    assert.equal(got.withImage.completion_tokens, 2);
    for (const e of [got.disposed, got.disposedStream]) {
      assert.equal(e?.status, 404, JSON.stringify(e));
      assert.equal(e.name, 'NotFoundError');
      assert.deepEqual([e.error.code, e.error.param], ['model_not_found', 'model']);
      assert.match(e.error.message, /was disposed/);
    }
    assert.equal(await alive(page), true);
    // The next load of the same URL answers (from the stored weights).
    const again = await loadIn(page);
    assert.ok(!again.error, JSON.stringify(again.error));
    const text = await ask(page, cases.text);
    assert.deepEqual(text.ids, cases.text.greedy_ids);
    assert.deepEqual(page.errors, []);
    await page.close();
  } finally {
    server.close();
  }
});
