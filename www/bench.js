// The bench page: loads a model of models.json (or ?model=) with the chosen precision, autotune
// and limits, then times one question through `model.bench` (the same code as `sphinx bench
// --model --json`) and shows the phases and every kernel with its variant.

const { loadSphinx } = await import('./pkg/index.js').catch(() => import('../pkg/index.js'));
const $ = (id) => document.getElementById(id);
let report = null;

async function models() {
  const select = $('model');
  const extra = new URLSearchParams(location.search).get('model');
  let list = [];
  try {
    list = await (await fetch('models.json', { cache: 'no-store' })).json();
  } catch {
    list = [];
  }
  if (extra) list.unshift({ name: extra, manifest: extra });
  select.replaceChildren(...list.map((m) => Object.assign(document.createElement('option'), { value: m.manifest, textContent: m.name })));
}

async function samplePixels() {
  const bitmap = await createImageBitmap(await (await fetch('assets/demo.png')).blob(), { colorSpaceConversion: 'none' });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  return ctx.getImageData(0, 0, bitmap.width, bitmap.height);
}

function fill(tbody, rows) {
  tbody.replaceChildren(
    ...rows.map((cells) => {
      const tr = document.createElement('tr');
      for (const c of cells) tr.append(Object.assign(document.createElement('td'), { textContent: c }));
      return tr;
    }),
  );
}

function show(info, r) {
  const l = info.load;
  const load = [
    ['download', l.downloadMs, `${(l.downloadedBytes / 1e6).toFixed(1)} MB fetched`],
    ['upload', l.uploadMs, `${(l.totalBytes / 1e6).toFixed(1)} MB of weights`],
    ['autotune', l.autotuneMs, `${l.autotune.tuned} shapes timed, ${l.autotune.cached} cached, ${l.autotune.small} too small (${l.autotune.timer})`],
    ['compile', l.compileMs, ''],
    ['load (total)', l.totalMs, `precision ${info.model.precision}`],
  ];
  fill($('phases').tBodies[0], [...load, ...r.phases.map((p) => [p.name, p.ms, p.detail])].map(([n, ms, d]) => [n, ms.toFixed(1), d]));
  const d = r.decode;
  $('decode').textContent = d
    ? `decode: ${d.tokensPerSecond.toFixed(2)} tokens/s · ${(d.bytesPerToken / 1e6).toFixed(1)} MB read per token → ${d.gbPerSecond.toFixed(2)} GB/s · GPU memory peak ${(r.gpuPeakBytes / 2 ** 20).toFixed(1)} MiB`
    : '';
  fill($('kernels').tBodies[0], r.kernels.map((k) => [k.name, k.variant + (k.tuned ? ' (tuned)' : ''), k.ms.toFixed(3), k.gflops.toFixed(2), k.gbps.toFixed(2)]));
  $('results').hidden = false;
}

$('form').addEventListener('submit', async (e) => {
  e.preventDefault();
  $('run').disabled = true;
  const status = (t) => ($('status').textContent = t);
  let model = null;
  try {
    status('Loading…');
    model = await loadSphinx($('model').value, {
      precision: $('precision').value,
      autotune: $('autotune').value,
      limits: $('limits').value,
      onProgress: (p) => status(`${p.phase} ${p.file ?? ''} ${p.total ? Math.round((100 * p.loaded) / p.total) : 0} %`),
    });
    status(`Timing on ${model.info.adapter.adapter || 'this GPU'}…`);
    const r = await model.bench({ image: $('with-image').checked ? await samplePixels() : undefined, tokens: Number($('tokens').value) || 16 });
    report = { adapter: model.info.adapter, model: model.info.model, load: model.info.load, ...r };
    show(model.info, r);
    status('Done.');
    document.body.dataset.done = 'true';
  } catch (err) {
    status(`Failed: ${err.message}`);
  } finally {
    await model?.dispose();
    $('run').disabled = false;
  }
});

$('copy').addEventListener('click', () => navigator.clipboard.writeText(JSON.stringify(report, null, 2)));
await models();
document.body.dataset.ready = 'true';
