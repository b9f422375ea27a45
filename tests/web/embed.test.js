// The one-tag embedding: www/embed.html holds only `<script type="module" src="pkg/sphinx-chat.js">`
// and `<sphinx-chat model="models/demo/manifest.json">`; in headless Chromium (SwiftShader) it must
// load the demo model, take an image and answer a question about it, telling the page through its
// `ready` and `answer` events.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { DEMO_SITE, GOLDEN, assertNoImageData, launchBrowser, startServer } from './lib.js';

const TIMEOUT = 10 * 60 * 1000;

test('embed: a page with only the <sphinx-chat> tag loads the demo model and answers about an image', { timeout: TIMEOUT }, async () => {
  const html = fs.readFileSync(path.join(DEMO_SITE, 'embed.html'), 'utf8');
  const body = html.slice(html.indexOf('<body>') + 6, html.indexOf('</body>')).trim();
  assert.equal(body, '<sphinx-chat model="models/demo/manifest.json" max-tokens="32"></sphinx-chat>', 'the page body is the tag alone');
  const browser = await launchBrowser();
  const server = await startServer(DEMO_SITE);
  try {
    const page = await browser.context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e));
    // The page's own script does nothing; the test listens to the element's events as a host page would.
    await page.addInitScript(() => {
      window.events = [];
      for (const name of ['ready', 'answer', 'error']) document.addEventListener(name, (e) => window.events.push({ name, detail: e.detail }));
    });
    await page.goto(`${server.url}embed.html`);
    await page.waitForFunction(() => window.events.some((e) => e.name === 'ready'), null, { timeout: TIMEOUT });
    await page.setInputFiles('sphinx-chat [data-file]', path.join(GOLDEN, 'image_wide.png'));
    await page.waitForFunction(() => document.querySelector('sphinx-chat').image !== null, null, { timeout: TIMEOUT });
    await page.fill('sphinx-chat [data-question]', 'What is in the image?');
    await page.click('sphinx-chat [data-send]');
    await page.waitForFunction(() => window.events.some((e) => e.name === 'answer'), null, { timeout: TIMEOUT });
    const events = await page.evaluate(() => window.events);
    const ready = events.find((e) => e.name === 'ready').detail;
    assert.equal(ready.model.release, 'SPHINX-Tiny-1k');
    const answer = events.find((e) => e.name === 'answer').detail;
    assert.equal(answer.question, 'What is in the image?');
    assert.ok(answer.answer.length > 0, 'an answer');
    assert.ok(['stop', 'length'].includes(answer.finish));
    assert.ok((await page.textContent('sphinx-chat .msg.assistant .text')).length > 0, 'the answer is shown');
    assert.deepEqual(events.filter((e) => e.name === 'error'), []);
    assert.deepEqual(errors, []);
    assertNoImageData(browser.requests, server.log());
    await page.close();
  } finally {
    server.close();
    await browser.close();
  }
});
