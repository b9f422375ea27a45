// Runs the bench page (www/bench.html) in headless Chromium on SwiftShader's WebGPU and prints its
// phase table as JSON: the browser side of `sphinx bench --model --json`.
//
//   node scripts/bench-browser.mjs [--site out/site] [--model URL] [--device gpu|cpu|auto] [--precision auto|f32|f16]
//        [--autotune cached|fresh|off] [--limits adapter|default] [--tokens N] [--no-image]
//
// `make site` builds out/site (the demo page and its demo model). Each run uses a fresh browser
// profile, so `cached` finds nothing cached; `fresh` times the variants, `off` takes the defaults.
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DEMO_SITE, launchBrowser, startServer } from '../tests/web/lib.js';

const { values: o } = parseArgs({
  options: {
    site: { type: 'string', default: DEMO_SITE },
    model: { type: 'string' },
    precision: { type: 'string', default: 'auto' },
    autotune: { type: 'string', default: 'fresh' },
    limits: { type: 'string', default: 'adapter' },
    device: { type: 'string', default: 'gpu' },
    tokens: { type: 'string', default: '16' },
    'no-image': { type: 'boolean', default: false },
  },
});

const server = await startServer(path.resolve(o.site));
const browser = await launchBrowser();
try {
  const page = await browser.page(`${server.url}bench.html${o.model ? `?model=${encodeURIComponent(o.model)}` : ''}`);
  await page.waitForSelector('body[data-ready="true"]');
  await page.selectOption('#device', o.device);
  await page.selectOption('#precision', o.precision);
  await page.selectOption('#autotune', o.autotune);
  await page.selectOption('#limits', o.limits);
  await page.fill('#tokens', o.tokens);
  if (o['no-image']) await page.uncheck('#with-image');
  await page.click('#run');
  await page.waitForFunction(() => document.body.dataset.done === 'true' || document.getElementById('status').textContent.startsWith('Failed'), null, { timeout: 0 });
  const status = await page.textContent('#status');
  if (status.startsWith('Failed')) throw new Error(status);
  const table = (id) => page.$$eval(`#${id} tbody tr`, (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));
  const phases = (await table('phases')).map(([name, ms, detail]) => ({ name, ms: Number(ms), detail }));
  const kernels = (await table('kernels')).map(([name, variant, ms, gflops, gbps]) => ({ name, variant, ms: Number(ms), gflops: Number(gflops), gbps: Number(gbps) }));
  const decode = await page.textContent('#decode');
  console.log(JSON.stringify({ options: o, phases, decode, kernels }, null, 2));
  await page.close();
} finally {
  await browser.close();
  server.close();
}
