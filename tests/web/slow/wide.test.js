// `make test-wide` (not part of `make test`: about 80 minutes on a 2-core machine without a GPU).
// The `wide` demo model — every real width of SPHINX-Tiny-1k, its real vocabulary and 1024-px image
// size, one block per ConvNeXt stage, one DINOv2 block, two LLM layers — converted to q8, answers an
// image question drawn on a canvas in headless Chromium (SwiftShader) on a device holding only
// WebGPU's default limits, with the greedy ids of the native GPU path and of the CPU path (all at f32
// precision); the peak GPU memory the page and the native run report is within 10 % of inspect's
// prediction for the run.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ARTIFACTS, ROOT, SITE, SPHINX, launchBrowser, prepareSite, startServer } from '../lib.js';

const TIMEOUT = 150 * 60 * 1000;
const QUESTION = 'What is in the image?';
const TOKENS = 2;
const IMAGE = path.join(ROOT, 'www/assets/demo.png');

function sphinx(args) {
  const r = spawnSync(SPHINX, args, { encoding: 'utf8', env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR || '/tmp' } });
  assert.equal(r.status, 0, `sphinx ${args.join(' ')}:\n${r.stderr}`);
  return r.stderr;
}

/** Greedy ids (and the run's memory line) of the native path on `device`. */
function native(model, device) {
  const t0 = Date.now();
  const err = sphinx(['run', '--model', model, '--device', device, '--precision', 'f32', '--autotune', 'off', '--limits', 'default', '--image', IMAGE, '--prompt', QUESTION, '--temperature', '0', '--max-tokens', String(TOKENS), '--print-ids']);
  const ids = /^ids: (.*)$/m.exec(err)[1].split(',').map(Number);
  const memory = /^GPU memory: peak ([\d.]+) MiB; inspect predicts ([\d.]+) MiB/m.exec(err);
  return { ids, seconds: (Date.now() - t0) / 1000, peakMiB: memory && Number(memory[1]), predictedMiB: memory && Number(memory[2]) };
}

test('wide: real widths, q8, default limits: Chromium, native GPU and CPU give the same greedy ids', { timeout: TIMEOUT }, async () => {
  prepareSite();
  const model = path.join(SITE, 'models/wide-q8');
  if (!fs.existsSync(path.join(model, 'manifest.json'))) sphinx(['demo-model', '--size', 'wide', '--quant', 'q8', '--out', model]);
  fs.copyFileSync(IMAGE, path.join(SITE, 'demo.png'));
  const gpu = native(model, 'gpu');
  assert.ok(Math.abs(gpu.peakMiB - gpu.predictedMiB) <= 0.1 * gpu.predictedMiB, `native peak ${gpu.peakMiB} MiB vs inspect ${gpu.predictedMiB} MiB`);
  const cpu = native(model, 'cpu');
  assert.deepEqual(gpu.ids, cpu.ids, 'native GPU vs CPU');
  const browser = await launchBrowser();
  const server = await startServer(SITE);
  try {
    const page = await browser.page(server.url);
    await page.waitForFunction(() => window.harnessReady);
    const t0 = Date.now();
    const got = await page.evaluate(
      async ({ question, tokens }) => {
        const model = await sphinx.loadSphinx('models/wide-q8/manifest.json', { device: 'gpu', limits: 'default', precision: 'f32', autotune: 'off' });
        const image = await model.encodeImage(await imageDataOf('demo.png'));
        const ids = [];
        for await (const t of model.chat({ messages: [{ role: 'user', content: question }], image, temperature: 0, maxTokens: tokens })) if (t.tokenId !== null) ids.push(t.tokenId);
        return { ids, info: model.info, memory: await model.gpuMemory(), encodeMs: image.encodeMs };
      },
      { question: QUESTION, tokens: TOKENS },
    );
    const seconds = (Date.now() - t0) / 1000;
    assert.equal(got.info.adapter.maxStorageBufferBindingSize, 128 << 20, 'the default binding limit');
    assert.equal(got.info.adapter.maxBufferSize, 256 << 20, 'the default buffer limit');
    assert.deepEqual(got.ids, gpu.ids, 'Chromium vs native GPU');
    const peakMiB = got.memory.peakBytes / 2 ** 20;
    assert.ok(Math.abs(peakMiB - gpu.predictedMiB) <= 0.1 * gpu.predictedMiB, `browser peak ${peakMiB} MiB vs inspect ${gpu.predictedMiB} MiB`);
    const report = { ids: got.ids, native: { gpu, cpu }, browser: { seconds, encodeMs: got.encodeMs, peakMiB, load: got.info.load } };
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    fs.writeFileSync(path.join(ARTIFACTS, 'wide.json'), JSON.stringify(report, null, 2));
    console.log(JSON.stringify(report, null, 2));
    assert.deepEqual(page.errors, []);
  } finally {
    server.close();
    await browser.close();
  }
});
