// The bench page: loads a model of models.json (or ?model=) on the chosen device with the chosen
// precision, autotune and limits, then times one question through `model.bench` (the same code as
// `sphinx bench --model --json`) and shows the phases and every kernel with its variant. Its second
// form times ours on the CPU and on the GPU against wllama (llama.cpp in wasm) on a GGUF copy of the
// same language model, repetitions interleaved (`make bench-peers` drives it headless).

// the package as the site serves it (./pkg), else beside www/ in the repository
const pkg = (file) => import(`./pkg/${file}`).catch(() => import(`../pkg/${file}`));
const [{ loadSphinx }, { decodeImage, pixelsOf }, { readModels }, { formatBytes }] = await Promise.all([pkg('index.js'), pkg('pixels.js'), pkg('ui/loader.js'), pkg('cache.js')]);
const $ = (id) => document.getElementById(id);
let report = null;

async function models() {
  const select = $('model');
  const extra = new URLSearchParams(location.search).get('model');
  // models.json read as the chat page reads it (a missing or bad list: none listed)
  const list = await readModels('models.json').catch(() => []);
  if (extra) list.unshift({ name: extra, manifest: extra });
  select.replaceChildren(...list.map((m) => Object.assign(document.createElement('option'), { value: m.manifest, textContent: m.name })));
}

async function samplePixels() {
  const bitmap = await decodeImage(await (await fetch('assets/demo.png')).blob());
  const pixels = pixelsOf(bitmap);
  bitmap.close();
  return pixels;
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
    ['download', l.downloadMs, `${formatBytes(l.downloadedBytes)} fetched`],
    ['upload', l.uploadMs, `${formatBytes(l.totalBytes)} of weights`],
    ['autotune', l.autotuneMs, `${l.autotune.tuned} shapes timed, ${l.autotune.cached} cached, ${l.autotune.small} too small (${l.autotune.timer})`],
    ['compile', l.compileMs, ''],
    ['load (total)', l.totalMs, `precision ${info.model.precision}`],
  ];
  fill($('phases').tBodies[0], [...load, ...r.phases.map((p) => [p.name, p.ms, p.detail])].map(([n, ms, d]) => [n, ms.toFixed(1), d]));
  const d = r.decode;
  $('decode').textContent = d
    ? `decode: ${d.tokensPerSecond.toFixed(2)} tokens/s · ${formatBytes(d.bytesPerToken)} read per token → ${d.gbPerSecond.toFixed(2)} GB/s · GPU memory peak ${(r.gpuPeakBytes / 2 ** 20).toFixed(1)} MiB`
    : '';
  const pct = (v) => (v === undefined ? '' : (100 * v).toFixed(1));
  fill($('kernels').tBodies[0], r.kernels.map((k) => [k.name, k.variant + (k.tuned ? ' (tuned)' : ''), k.ms.toFixed(3), k.gflops.toFixed(2), k.gbps.toFixed(2), pct(k.computeShare), pct(k.bandwidthShare)]));
  const roof = r.roofline;
  $('roofline-results').hidden = !roof;
  if (roof) {
    const [m, n, k] = roof.gemmShape;
    const texture = roof.textureReadGbps === undefined ? '' : ` · texture read ${roof.textureReadGbps.toFixed(1)} GB/s`;
    $('roofline-line').textContent = `read ${roof.readGbps.toFixed(1)} GB/s${texture} · copy ${roof.copyGbps.toFixed(1)} GB/s (read + written, ${roof.bytes / 2 ** 20} MiB) · f32 GEMM ${roof.gemmGflops.toFixed(1)} GFLOP/s (${roof.gemmKernel} at ${m}×${n}×${k})`;
    fill($('efficiency').tBodies[0], r.efficiency.map((e) => [e.phase, `${e.reached.toPrecision(3)} ${e.unit}`, `${e.limit.toPrecision(3)} ${e.unit}`, `${(100 * e.share).toFixed(1)} %`]));
  }
  $('results').hidden = false;
}

/** Where a loaded model of ours runs, in a few words. */
function ranOn(info) {
  const d = info.device;
  if (d.kind === 'cpu') return `CPU: ${d.cpu.isa}, ${d.cpu.threads} thread${d.cpu.threads === 1 ? '' : 's'}`;
  return `GPU: ${info.adapter.adapter || 'unnamed adapter'}${info.adapter.software ? ' (software)' : ''}`;
}

$('form').addEventListener('submit', async (e) => {
  e.preventDefault();
  $('run').disabled = true;
  const status = (t) => ($('status').textContent = t);
  let model = null;
  try {
    status('Loading…');
    model = await loadSphinx($('model').value, {
      device: $('device').value,
      precision: $('precision').value,
      autotune: $('autotune').value,
      limits: $('limits').value,
      onProgress: (p) => status(`${p.phase} ${p.file ?? ''} ${p.total ? Math.round((100 * p.loaded) / p.total) : 0} %`),
    });
    status(`Timing on ${ranOn(model.info)}…`);
    const image = $('with-image').checked ? await samplePixels() : undefined;
    const plan = { tokens: Number($('tokens').value) || 16, promptTokens: Number($('prompt-tokens').value) || 48, reps: Number($('reps').value) || 1, roofline: $('roofline').checked };
    const r = await model.bench({ image, ...plan });
    report = { adapter: model.info.adapter, device: model.info.device, model: model.info.model, load: model.info.load, ...r };
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

// ---- against wllama ------------------------------------------------------------------------------

/** The comparison's prompt: "hello" n − 1 times, which both LLaMA tokenizers make n tokens (BOS and
 *  one "▁hello" each); wllama takes text, not ids. */
const benchText = (n) => Array(Math.max(0, n - 1)).fill('hello').join(' ');

/** Ours on `device`: {name, ranOn, run(promptTokens, tokens) → {prefill, decode} tok/s, close}. */
async function ours(device, threads) {
  const model = await loadSphinx($('model').value, { device, threads, precision: $('precision').value, autotune: $('autotune').value });
  return {
    name: `ours-${device}`,
    ranOn: ranOn(model.info),
    async run(promptTokens, tokens) {
      const r = await model.bench({ tokens, text: benchText(promptTokens), reps: 1 });
      if (r.promptTokens !== promptTokens) throw new Error(`ours made ${r.promptTokens} prompt tokens of the text, not ${promptTokens}`);
      return { prefill: r.prefillTokensPerSecond, decode: r.decode.tokensPerSecond, ids: r.ids };
    },
    close: () => model.dispose(),
  };
}

/** wllama (its package under vendor/wllama/) on the GGUF at `gguf`, on the CPU with `threads`. */
async function wllama(gguf, threads) {
  const base = new URL('vendor/wllama/', location.href);
  const { Wllama } = await import(new URL('index.js', base).href);
  const w = new Wllama({ default: new URL('wasm/wllama.wasm', base).href }, { suppressNativeLog: true });
  const resp = await fetch(gguf);
  if (!resp.ok) throw new Error(`${gguf}: HTTP ${resp.status}`);
  await w.loadModel([await resp.blob()], { n_threads: threads, n_gpu_layers: 0, n_ctx: 1024, n_batch: 512, n_ubatch: 512, n_parallel: 1 });
  return {
    name: 'wllama',
    ranOn: `CPU: wasm, ${w.getNumThreads()} thread${w.getNumThreads() === 1 ? '' : 's'}${w.isMultithread() ? '' : ' (single-threaded build)'}`,
    async run(promptTokens, tokens) {
      const r = await w.createCompletion({ prompt: benchText(promptTokens), max_tokens: tokens, temperature: 0, cache_prompt: false });
      const t = r.timings;
      if (!t || t.prompt_n !== promptTokens) throw new Error(`wllama evaluated ${t?.prompt_n} prompt tokens, not ${promptTokens}`);
      return { prefill: t.prompt_per_second, decode: t.predicted_per_second };
    },
    close: () => w.exit(),
  };
}

const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

/** Loads every engine, then runs `reps` rounds, each engine once a round (interleaved). */
async function compare({ engines, gguf, threads, promptTokens, tokens, reps }, status) {
  const loaded = [];
  try {
    for (const name of engines) {
      status(`Loading ${name}…`);
      loaded.push(name === 'wllama' ? await wllama(gguf, threads) : await ours(name.replace('ours-', ''), threads));
    }
    const runs = Object.fromEntries(loaded.map((e) => [e.name, []]));
    for (let rep = 0; rep < reps; rep++) {
      for (const e of loaded) {
        status(`Round ${rep + 1} of ${reps}: ${e.name}…`);
        runs[e.name].push(await e.run(promptTokens, tokens));
      }
    }
    return loaded.map((e) => ({
      engine: e.name,
      ranOn: e.ranOn,
      prefill: median(runs[e.name].map((r) => r.prefill)),
      decode: median(runs[e.name].map((r) => r.decode)),
      runs: runs[e.name],
    }));
  } finally {
    for (const e of loaded) await e.close();
  }
}

$('peers-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  $('compare').disabled = true;
  const status = (t) => ($('peers-status').textContent = t);
  try {
    const opts = {
      engines: $('engines').value.split(',').map((s) => s.trim()).filter(Boolean),
      gguf: $('gguf').value,
      threads: Number($('threads').value) || 2,
      promptTokens: Number($('prompt-tokens').value) || 64,
      tokens: Number($('tokens').value) || 32,
      reps: Number($('reps').value) || 3,
    };
    const rows = await compare(opts, status);
    const base = rows.find((r) => r.engine === 'wllama');
    const ratio = (a, b) => (b ? (a / b).toFixed(2) : '');
    fill($('peers').tBodies[0], rows.map((r) => [r.engine, r.ranOn, r.prefill.toFixed(1), r.decode.toFixed(1), ratio(r.prefill, base?.prefill), ratio(r.decode, base?.decode)]));
    $('peers').hidden = false;
    document.body.dataset.peers = JSON.stringify({ options: opts, isolated: self.crossOriginIsolated, rows });
    status(`Done: medians of ${opts.reps}, prompt ${opts.promptTokens} tokens, ${opts.tokens} tokens decoded.`);
  } catch (err) {
    status(`Failed: ${err.message}`);
  } finally {
    $('compare').disabled = false;
  }
});
await models();
document.body.dataset.ready = 'true';
