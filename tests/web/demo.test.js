// Browser tests of the demo page (out/site from `make site`: www/ + the package + the demo model +
// models.json) in headless Chromium on SwiftShader, served by `sphinx serve`. The page is the
// <sphinx-chat> element; Playwright's selectors reach into its (open) shadow root. Covered: every task
// of the picker gives its exact upstream prompt; a dragged rectangle on a wide and a tall image gives
// the padded-square fractions of its pixels; a canned grounded answer (the element's renderAnswer)
// draws its boxes where they belong, each phrase chip linked to its box; New chat during an answer,
// Stop before the first token and a length finish; 390 px without sideways scrolling; the keyboard
// path (file picker, region tool, send, stop); no WebGPU (the CPU backend, said in plain words) and a broken model URL;
// the model picker and Clear cache; and that no request carries image bytes. Screenshots go to
// out/test-artifacts/screenshots/.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ARTIFACTS, DEMO_SITE, GOLDEN, assertNoImageData, launchBrowser, linesFor, siteFiles, startServer } from './lib.js';

const TIMEOUT = 10 * 60 * 1000;
const SHOTS = path.join(ARTIFACTS, 'screenshots');
const WIDE = path.join(GOLDEN, 'image_wide.png'); // 333 x 217
const TALL = path.join(GOLDEN, 'image_tall.png'); // 200 x 347
const el = (s) => `sphinx-chat ${s}`;
let browser;
let server;

before(async () => {
  assert.ok(fs.existsSync(path.join(DEMO_SITE, 'models.json')), 'out/site is missing: run `make site`');
  fs.mkdirSync(SHOTS, { recursive: true });
  browser = await launchBrowser();
  server = await startServer(DEMO_SITE);
});

after(async () => {
  server?.close();
  await browser?.close();
});

/** The demo page with its model loaded. */
async function openPage(query = '') {
  const page = await browser.page(`${server.url}${query}`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: TIMEOUT });
  return page;
}

/** Picks an image file through the element's file input and waits until the model has read it. */
async function giveImage(page, file) {
  await page.setInputFiles(el('[data-file]'), file);
  await page.waitForFunction(() => /read in/.test(document.querySelector('sphinx-chat').shadowRoot.querySelector('[data-image-status]').textContent), null, { timeout: TIMEOUT });
}

const question = (page) => page.inputValue(el('[data-question]'));
const answered = (page) => page.evaluate(() => Number(document.body.dataset.answered || 0));

/** Sets one of the Settings fields (opening Settings). */
async function setting(page, name, value) {
  await page.evaluate(() => (document.querySelector('sphinx-chat').shadowRoot.querySelector('[data-settings]').open = true));
  await page.fill(el(`[data-${name}]`), String(value));
}

/** Python's/Rust's "{:.2}" for values that are not exact ties (the golden sides are odd). */
const f2 = (v) => v.toFixed(2);

function fractions({ x1, y1, x2, y2 }, w, h) {
  const side = Math.max(w, h);
  const ox = w < h ? Math.floor((h - w) / 2) : 0;
  const oy = w < h ? 0 : Math.floor((w - h) / 2);
  return `[${f2((x1 + ox) / side)}, ${f2((y1 + oy) / side)}, ${f2((x2 + ox) / side)}, ${f2((y2 + oy) / side)}]`;
}

const EXPECTED = [
  ['general_qa', null, "What's in the image?"],
  ['detailed_description', null, 'Generate a detailed description about the image.'],
  ['caption', null, 'Provide a one-sentence caption for the provided image.'],
  ['rec', 'the man in the blue shirt', 'Please provide the bounding box coordinate of the region this sentence describes: the man in the blue shirt.'],
  ['grounded_caption', null, 'Describe the image concisely. Include the bounding box for each mentioned object.'],
  ['detect', 'dogs', 'Detect all dogs shown in the image.'],
  ['text_spotting', null, 'Please detect all texts and provide their bounding box coordinate.'],
  ['chart_to_table', null, 'Convert this chart to a table.'],
  ['short_answer', 'What color is the bus?', 'What color is the bus?\nAnswer the question using a single word or phrase.'],
];

test('tasks: every task of the picker gives its exact upstream prompt; a dragged region gives padded-square fractions', { timeout: TIMEOUT }, async () => {
  const page = await openPage();
  const ids = await page.$$eval(el('[data-tasks] button'), (bs) => bs.map((b) => b.dataset.task));
  const pkg = await page.evaluate(async () => {
    const m = await import('./pkg/index.js');
    return { tasks: m.TASKS.map((t) => t.id), engine: await m.taskIds() };
  });
  assert.deepEqual(pkg.tasks, pkg.engine, 'TASKS = the engine\'s task ids');
  assert.deepEqual(ids, ['ask', ...pkg.tasks]);
  for (const [id, field, prompt] of EXPECTED) {
    await page.click(el(`[data-task="${id}"]`));
    if (field) await page.fill(el('[data-task-fields] input'), field);
    await page.waitForFunction((p) => document.querySelector('sphinx-chat').shadowRoot.querySelector('[data-question]').value === p, prompt, { timeout: 5000 }).catch(() => {});
    assert.equal(await question(page), prompt, id);
  }
  for (const [file, w, h] of [[WIDE, 333, 217], [TALL, 200, 347]]) {
    await giveImage(page, file);
    await page.click(el('[data-task="keypoints"]'));
    assert.equal(await page.getAttribute(el('[data-region-tool]'), 'aria-pressed'), 'true', 'keypoints turns the region tool on');
    assert.equal(await question(page), '', 'no prompt before a region');
    assert.match(await page.textContent(el('[data-reason]')), /Draw the region/);
    const box = await page.locator(el('[data-image]')).boundingBox();
    const from = { x: box.x + box.width * 0.2, y: box.y + box.height * 0.3 };
    const to = { x: box.x + box.width * 0.7, y: box.y + box.height * 0.85 };
    await page.mouse.move(from.x, from.y);
    await page.mouse.down();
    await page.mouse.move(to.x, to.y, { steps: 5 });
    await page.mouse.up();
    const region = await page.evaluate(() => document.querySelector('sphinx-chat').region);
    const px = (p, k) => ({ x: ((p.x - box.x) * w) / box.width, y: ((p.y - box.y) * h) / box.height })[k];
    for (const [k, p, axis] of [['x1', from, 'x'], ['y1', from, 'y'], ['x2', to, 'x'], ['y2', to, 'y']]) {
      assert.ok(Math.abs(region[k] - px(p, axis)) <= 1, `${k}: ${region[k]} vs dragged ${px(p, axis)}`);
    }
    const expected = `Detect the key points of the person in the region ${fractions(region, w, h)}.`;
    await page.waitForFunction((p) => document.querySelector('sphinx-chat').shadowRoot.querySelector('[data-question]').value === p, expected, { timeout: 5000 }).catch(() => {});
    assert.equal(await question(page), expected, `${w}x${h}`);
    // The region typed into the fields is the same region.
    assert.equal(await page.inputValue(el('[data-r="x2"]')), String(region.x2));
    // A region can go into any question.
    await page.click(el('[data-task="ask"]'));
    await page.click(el('[data-region-insert]'));
    assert.equal(await question(page), fractions(region, w, h));
  }
  assert.deepEqual(page.errors, []);
  await page.close();
});

/** An RGBA pixel of the overlay canvas. */
const overlayPixel = (page, x, y) =>
  page.evaluate(([x, y]) => [...document.querySelector('sphinx-chat').shadowRoot.querySelector('[data-overlay]').getContext('2d').getImageData(x, y, 1, 1).data], [x, y]);
const hex = (rgb) => `#${rgb.slice(0, 3).map((v) => v.toString(16).padStart(2, '0')).join('')}`;

test('grounded answer: boxes drawn where they belong, each phrase chip linked to its box; screenshots', { timeout: TIMEOUT }, async () => {
  const page = await openPage();
  await page.setViewportSize({ width: 1280, height: 900 });
  await giveImage(page, WIDE);
  const answer = 'A <p>red house</p> [0.10, 0.30, 0.45, 0.70] beside <p>a tree</p> [0.55, 0.25, 0.80, 0.75] under the sky [0.00, 0.18, 1.00, 0.35].';
  await page.evaluate((a) => document.querySelector('sphinx-chat').renderAnswer(a, { question: 'Describe the image concisely. Include the bounding box for each mentioned object.' }), answer);
  // 333 x 217: side 333, the image sits (333 - 217) // 2 = 58 px down in the square.
  const boxes = [[0.1, 0.3, 0.45, 0.7], [0.55, 0.25, 0.8, 0.75], [0.0, 0.18, 1.0, 0.35]].map(([a, b, c, d]) => ({ x1: a * 333, y1: b * 333 - 58, x2: c * 333, y2: d * 333 - 58 }));
  const chips = await page.$$eval(el('.msg.assistant [data-g]'), (cs) => cs.map((c) => ({ g: Number(c.dataset.g), text: c.textContent, tag: c.tagName, colour: c.style.getPropertyValue('--c') })));
  assert.deepEqual(chips.filter((c) => c.tag === 'BUTTON' && !c.text.startsWith('#')).map((c) => [c.g, c.text]), [[0, 'red house'], [1, 'a tree']]);
  assert.equal(await page.textContent(el('.msg.assistant .text')), 'A red house #1 beside a tree #2 under the sky #3.');
  const items = await page.$$eval(el('[data-shapes] li'), (li) => li.map((l) => l.textContent));
  assert.equal(items.length, 3);
  boxes.forEach((b, i) => assert.ok(items[i].includes(`box (${Math.round(b.x1)}, ${Math.round(b.y1)})–(${Math.round(b.x2)}, ${Math.round(b.y2)}) px`), items[i]));
  const colourOf = (g) => chips.find((c) => c.g === g).colour;
  // Each box's left edge, half way down, is drawn in its chip's colour; its middle is empty.
  for (const [g, b] of boxes.entries()) {
    const edge = await overlayPixel(page, Math.round(b.x1), Math.round((b.y1 + b.y2) / 2));
    assert.equal(edge[3], 255, `box ${g} edge drawn`);
    assert.equal(hex(edge), colourOf(g), `box ${g} in its chip's colour`);
  }
  const middle = await overlayPixel(page, Math.round((boxes[0].x1 + boxes[0].x2) / 2), Math.round((boxes[0].y1 + boxes[0].y2) / 2));
  assert.equal(middle[3], 0, 'inside the box nothing is drawn');
  // Hovering a chip highlights its box (drawn three times as thick) and dims the others.
  const inner = async (g) => overlayPixel(page, Math.round(boxes[g].x1) + 2, Math.round((boxes[g].y1 + boxes[g].y2) / 2));
  assert.equal((await inner(1))[3], 0, 'the thin line does not reach 2 px inside');
  await page.hover(el('.msg.assistant .chip[data-g="1"]'));
  assert.equal(hex(await inner(1)), colourOf(1), 'highlighted box drawn thicker');
  const other = await overlayPixel(page, Math.round(boxes[0].x1), Math.round((boxes[0].y1 + boxes[0].y2) / 2));
  assert.ok(other[3] < 200, `the other boxes are dimmed (alpha ${other[3]})`);
  assert.ok(await page.$eval(el('[data-shapes] li[data-g="1"]'), (li) => li.classList.contains('hl')), 'the list item of the box is highlighted too');
  await page.mouse.move(0, 0);
  await page.screenshot({ path: path.join(SHOTS, 'grounded.png') });
  await page.screenshot({ path: path.join(SHOTS, 'desktop.png'), fullPage: true });
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.screenshot({ path: path.join(SHOTS, 'dark.png'), fullPage: true });
  await page.emulateMedia({ colorScheme: 'light' });
  // At 390 x 844 nothing scrolls sideways, and the chat is one link away.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(200);
  const widths = await page.evaluate(() => ({ doc: document.documentElement.scrollWidth, view: window.innerWidth }));
  assert.ok(widths.doc <= widths.view, `document ${widths.doc} px wide in a ${widths.view} px viewport`);
  await page.screenshot({ path: path.join(SHOTS, 'mobile-390.png'), fullPage: true });
  await page.click(el('[data-skip]'));
  assert.equal(await page.evaluate(() => document.querySelector('sphinx-chat').shadowRoot.activeElement?.id), 'question', 'the skip link focuses the question');
  // A chart→table answer is shown as a table.
  await page.evaluate(() => document.querySelector('sphinx-chat').renderAnswer('| Year | Sales |\n|---|---|\n| 2020 | 1.5 |\n| 2021 | 2.0 |', { question: 'Convert this chart to a table.' }));
  const table = await page.$$eval(el('.msg.assistant:last-of-type table tr'), (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));
  assert.deepEqual(table, [['Year', 'Sales'], ['2020', '1.5'], ['2021', '2.0']]);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('chat: New chat during an answer, Stop before the first token, a length finish; nothing carries the image', { timeout: TIMEOUT }, async () => {
  const page = await openPage();
  const mark = browser.requests.length;
  const logMark = server.log().length;
  await giveImage(page, WIDE);
  await setting(page, 'max-tokens', 400);
  await setting(page, 'temperature', 0);
  // 1. New chat while an answer streams: the next question is answered in a fresh conversation.
  await page.fill(el('[data-question]'), 'What is in the image?');
  await page.click(el('[data-send]'));
  assert.equal(await question(page), '', 'the question box is cleared');
  await page.waitForFunction(() => document.querySelector('sphinx-chat').shadowRoot.querySelector('.msg.assistant .text')?.textContent.length > 0, null, { timeout: TIMEOUT });
  assert.equal(await page.isEnabled(el('[data-stop]')), true);
  await page.click(el('[data-new-chat]'));
  assert.equal(await page.locator(el('.msg')).count(), 0, 'the log is cleared');
  await setting(page, 'max-tokens', 3);
  await page.fill(el('[data-question]'), 'Describe the image.');
  await page.click(el('[data-send]'));
  await page.waitForFunction(() => Number(document.body.dataset.answered || 0) >= 1, null, { timeout: TIMEOUT });
  assert.equal(await page.locator(el('.msg.error')).count(), 0, await page.textContent(el('[data-log]')));
  assert.deepEqual(await page.$$eval(el('.msg'), (m) => m.map((x) => x.className)), ['msg user', 'msg assistant']);
  // 3. The length finish is said.
  assert.match(await page.textContent(el('.msg.assistant .stats')), /3 tokens.*stopped at the 3-token limit/);
  // 2. Stop before the first token: no empty turn; the question comes back; the chat goes on.
  await setting(page, 'max-tokens', 2);
  await page.fill(el('[data-question]'), 'Is it a photo?');
  await page.click(el('[data-send]'));
  await page.click(el('[data-stop]'));
  await page.waitForFunction(() => document.querySelector('sphinx-chat').shadowRoot.querySelector('[data-stop]').disabled, null, { timeout: TIMEOUT });
  assert.deepEqual(await page.$$eval(el('.msg'), (m) => m.map((x) => x.className)), ['msg user', 'msg assistant'], 'no turn for the stopped question');
  assert.equal(await question(page), 'Is it a photo?');
  const before = await answered(page);
  await page.click(el('[data-send]'));
  await page.waitForFunction((n) => Number(document.body.dataset.answered || 0) > n, before, { timeout: TIMEOUT });
  assert.equal(await page.locator(el('.msg.error')).count(), 0, await page.textContent(el('[data-log]')));
  assert.equal(await page.locator(el('.msg.assistant')).count(), 2);
  // Privacy: while the image was read and answered, the page fetched only its own files, with no body.
  const allowed = siteFiles(DEMO_SITE);
  const requests = browser.requests.slice(mark);
  for (const r of requests) {
    const u = new URL(r.url);
    assert.equal(u.origin, new URL(server.url).origin, `request to another origin: ${r.url}`);
    assert.ok(allowed.has(decodeURIComponent(u.pathname)), `request for something that is neither a page asset nor a model file: ${r.url}`);
  }
  assertNoImageData(requests, server.log().slice(logMark));
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('keyboard: file picker, region tool, send and stop without a mouse', { timeout: TIMEOUT }, async () => {
  const page = await openPage();
  const active = () => page.evaluate(() => {
    const a = document.querySelector('sphinx-chat').shadowRoot.activeElement;
    return a ? Object.keys(a.dataset)[0] ?? a.tagName : null;
  });
  const readIn = (n) => page.waitForFunction((n) => (document.querySelector('sphinx-chat').shadowRoot.querySelector('[data-image-status]').textContent.match(/read in/g) ?? []).length > 0 && window.__reads >= n, n, { timeout: TIMEOUT });
  await page.evaluate(() => {
    window.__reads = 0;
    new MutationObserver(() => /read in/.test(document.querySelector('sphinx-chat').shadowRoot.querySelector('[data-image-status]').textContent) && window.__reads++).observe(document.querySelector('sphinx-chat').shadowRoot.querySelector('[data-image-status]'), { childList: true, characterData: true, subtree: true });
  });
  // Tab goes from the drop zone to "Choose a file", which opens the file picker with Enter; so does
  // Enter on the drop zone itself.
  // (A listener for the whole test: Playwright then intercepts every file chooser the page opens.)
  const choosers = [];
  page.on('filechooser', (c) => choosers.push(c));
  const nextChooser = async (n) => {
    for (let i = 0; i < 100 && choosers.length < n; i++) await page.waitForTimeout(100);
    assert.equal(choosers.length, n, 'no file chooser opened');
    return choosers[n - 1];
  };
  await page.waitForTimeout(200);
  await page.focus(el('[data-drop]'));
  await page.keyboard.press('Tab');
  assert.equal(await active(), 'choose');
  await page.keyboard.press('Enter');
  await (await nextChooser(1)).setFiles(WIDE);
  await readIn(1);
  await page.focus(el('[data-drop]'));
  await page.keyboard.press('Enter');
  await (await nextChooser(2)).setFiles(TALL);
  await readIn(2);
  // The key-points task by keyboard; the region by arrow keys on the focused image.
  await page.focus(el('[data-task="keypoints"]'));
  await page.keyboard.press('Enter');
  await page.focus(el('[data-drop]'));
  await page.keyboard.press('ArrowRight');
  await page.keyboard.press('Shift+ArrowDown');
  const region = await page.evaluate(() => document.querySelector('sphinx-chat').region);
  // The middle half of 200 x 347, moved right by 2 % (4 px), grown down by 2 % (7 px).
  assert.deepEqual(region, { x1: 54, y1: 87, x2: 154, y2: 267 });
  const expected = `Detect the key points of the person in the region ${fractions(region, 200, 347)}.`;
  await page.waitForFunction((p) => document.querySelector('sphinx-chat').shadowRoot.querySelector('[data-question]').value === p, expected, { timeout: 5000 }).catch(() => {});
  assert.equal(await question(page), expected);
  // Send with Enter in the question box; Escape stops.
  await setting(page, 'max-tokens', 400);
  await page.focus(el('[data-question]'));
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.querySelector('sphinx-chat').shadowRoot.querySelector('.msg.assistant .text')?.textContent.length > 0, null, { timeout: TIMEOUT });
  await page.keyboard.press('Escape');
  await page.waitForFunction(() => document.querySelector('sphinx-chat').shadowRoot.querySelector('[data-stop]').disabled, null, { timeout: TIMEOUT });
  assert.match(await page.textContent(el('.msg.assistant .stats')), /stopped by you/);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('models and errors: the model picker, Clear cache asks first, a broken model URL, and no WebGPU runs on the CPU in plain words', { timeout: TIMEOUT }, async () => {
  // models.json lists the demo model with its size.
  let page = await openPage();
  const options = await page.$$eval(el('[data-models] option'), (os) => os.map((o) => o.textContent));
  assert.equal(options.length, 1);
  assert.match(options[0], /Demo model.*19\.\d MB · f32/);
  assert.match(await page.textContent(el('[data-cache-size]')), /MB stored in this browser/);
  await page.click(el('[data-clear]'));
  assert.match(await page.textContent(el('[data-confirm]')), /Delete the .* MB of this model/);
  await page.click(el('[data-confirm-no]'));
  assert.equal(await page.evaluate(() => document.body.dataset.ready), 'true', 'Keep keeps the model');
  await page.click(el('[data-clear]'));
  await page.click(el('[data-confirm-yes]'));
  await page.waitForFunction(() => /nothing stored/.test(document.querySelector('sphinx-chat').shadowRoot.querySelector('[data-cache-size]').textContent), null, { timeout: TIMEOUT });
  assert.equal(await page.isDisabled(el('[data-send]')), true);
  await page.close();

  // A broken model URL: a plain message, Retry and the way back to the demo model; an image given
  // meanwhile is read once a model is there.
  page = await browser.page(`${server.url}?model=models/missing/manifest.json`);
  await page.waitForSelector(el('[data-load-error]:not([hidden])'), { timeout: TIMEOUT });
  assert.match(await page.textContent(el('[data-error-title]')), /The model could not be downloaded/);
  assert.match(await page.textContent(el('[data-error-details]')), /HTTP 404/);
  assert.equal(await page.isVisible(el('[data-retry]')), true);
  assert.match(await page.textContent(el('[data-reason]')), /The model is not loaded/);
  await page.setInputFiles(el('[data-file]'), WIDE);
  await page.waitForFunction(() => /read as soon as the model has loaded/.test(document.querySelector('sphinx-chat').shadowRoot.querySelector('[data-image-status]').textContent), null, { timeout: TIMEOUT });
  await page.click(el('[data-use-demo]'));
  await page.waitForFunction(() => /read in/.test(document.querySelector('sphinx-chat').shadowRoot.querySelector('[data-image-status]').textContent), null, { timeout: TIMEOUT });
  await page.close();

  // No WebGPU adapter (Chromium without a usable GPU) and no WebGPU at all: the page runs the model
  // on the CPU and says so, and why, in plain words.
  const noGpu = await launchBrowser({ webgpu: false });
  try {
    for (const [init, why] of [
      [null, /no usable GPU/],
      [() => delete Navigator.prototype.gpu, /this browser has no WebGPU/],
    ]) {
      const p = await noGpu.context.newPage();
      if (init) await p.addInitScript(init);
      await p.goto(server.url);
      await p.waitForFunction(() => document.body.dataset.ready === 'true', null, { timeout: TIMEOUT });
      const words = await p.textContent(el('[data-gpu]'));
      assert.match(words, /Running on this computer's processor \(CPU, \d+ threads?\)/);
      assert.match(words, why);
      assert.equal(await p.isDisabled(el('[data-send]')), false, 'the CPU model answers');
      await p.close();
    }
  } finally {
    await noGpu.close();
  }
});

test('bench page: times the phases and every kernel of the demo model, with the variant of each', { timeout: TIMEOUT }, async () => {
  const page = await browser.page(`${server.url}bench.html`);
  await page.waitForSelector('body[data-ready="true"]');
  await page.selectOption('#device', 'gpu'); // the kernel rows are the GPU's
  await page.fill('#tokens', '4');
  await page.click('#run');
  await page.waitForSelector('body[data-done="true"]', { timeout: TIMEOUT });
  const phases = await page.$$eval('#phases tbody tr', (rows) => rows.map((r) => r.cells[0].textContent));
  for (const p of ['download', 'upload', 'autotune', 'compile', 'encode', 'encode convnext', 'encode dinov2', 'prefill', 'decode']) assert.ok(phases.includes(p), `no ${p} row: ${phases}`);
  const kernels = await page.$$eval('#kernels tbody tr', (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));
  assert.ok(kernels.length >= 10, `${kernels.length} kernel rows`);
  for (const [shape, variant, ms] of kernels) {
    assert.match(shape, /^(f32|f16|f16_native|q8|q4) (decode|batch) \d+x\d+ ×\d+ \(\d+ rows\)$/);
    assert.match(variant, /^(tiled|vec4|small|matvec)\w*( \(tuned\))?$/);
    assert.ok(Number(ms) > 0, `${shape}: ${ms} ms`);
  }
  assert.match(await page.textContent('#decode'), /decode: \d+\.\d+ tokens\/s · \d+\.\d MB read per token/);
  await page.screenshot({ path: path.join(SHOTS, 'bench.png'), fullPage: true });
  assert.deepEqual(page.errors, []);
  await page.close();
});
