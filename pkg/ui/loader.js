// The model bar of <sphinx-chat>: the list of models (models.json: name, manifest URL, size,
// precision; a model opened from elsewhere is added to it, so the picker names what was asked for
// even when it fails), loading with progress (an indeterminate bar for the phases that have no
// byte count: timing and compiling the GPU kernels), cancel, retry and "back to the demo model",
// what the browser has stored for the model and clearing it (after asking), the device in one
// line, and errors in plain language with the model's URL, the engine's exact message under
// "Details".

import { cachedBytes, clearCache, explain, loadSphinx } from '../index.js';
import { formatBytes } from '../cache.js';

const PHASES = {
  download: 'Downloading',
  verify: 'Checking the stored bytes of',
  upload: 'Uploading the weights',
  autotune: 'Timing the GPU kernels on this device (once; a few seconds)',
  compile: 'Compiling the GPU kernels',
};
/** Phases whose progress is a byte count; the others show an indeterminate bar. */
const COUNTED = new Set(['download', 'verify', 'upload']);

function formatSeconds(s) {
  if (!Number.isFinite(s)) return '…';
  if (s < 60) return `${Math.max(1, Math.ceil(s))} s`;
  return `${Math.floor(s / 60)} min ${Math.ceil(s % 60)} s`;
}

/** The text of a progress event. */
export function progressText(e) {
  if (e.note) return e.note;
  let text = PHASES[e.phase] ?? e.phase;
  if (e.phase === 'download' || e.phase === 'verify') {
    if (e.file) text += ` ${e.file}`;
    text += ` — ${formatBytes(e.loaded)} of ${formatBytes(e.total)}`;
    if (e.bytesPerSecond > 0) text += ` · ${formatBytes(e.bytesPerSecond)}/s · ${formatSeconds((e.total - e.loaded) / e.bytesPerSecond)} left`;
  } else if (e.phase === 'upload') {
    text += ` — ${formatBytes(e.loaded)} of ${formatBytes(e.total)}`;
  }
  return text;
}

/** models.json → [{name, manifest (absolute URL), size, precision}]; bad entries are an error. */
export async function readModels(url) {
  const resp = await fetch(url, { cache: 'no-store' });
  if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}`);
  const list = await resp.json();
  if (!Array.isArray(list)) throw new Error(`${url}: expected a list of models`);
  return list.map((m, i) => {
    if (typeof m?.name !== 'string' || typeof m?.manifest !== 'string') throw new Error(`${url}: model ${i} needs a name and a manifest URL`);
    return { name: m.name, manifest: new URL(m.manifest, new URL(url, location.href)).href, size: Number(m.size) || 0, precision: String(m.precision ?? '') };
  });
}

export class Loader {
  constructor(root, { onLoading, onLoaded, onUnloaded, onError, onChange }) {
    this.q = (s) => root.querySelector(s);
    this.onChange = onChange;
    this.onLoading = onLoading;
    this.onLoaded = onLoaded;
    this.onUnloaded = onUnloaded;
    this.onError = onError;
    this.url = null;
    this.demoUrl = null;
    this.device = 'auto'; // loadSphinx's device option
    this.model = null;
    this.loading = null; // AbortController of the load in progress
    this.phase = null; // the text of the load's phase now
    this.q('[data-cancel]').addEventListener('click', () => this.loading?.abort());
    this.q('[data-retry]').addEventListener('click', () => this.load(this.url));
    this.q('[data-use-demo]').addEventListener('click', () => this.load(this.demoUrl));
    this.q('[data-models]').addEventListener('change', (e) => this.load(e.target.value));
    this.q('[data-clear]').addEventListener('click', () => this.#askClear());
    this.q('[data-confirm-no]').addEventListener('click', () => this.#hideConfirm());
    this.q('[data-confirm-yes]').addEventListener('click', () => this.#clear());
  }

  /** Fills the model picker from models.json (hidden when there is none or it fails). */
  async showModels(url, current) {
    const pick = this.q('[data-model-pick]');
    let models = [];
    try {
      models = url ? await readModels(url) : [];
    } catch (e) {
      console.warn(`sphinx-chat: ${e.message}`);
    }
    const select = this.q('[data-models]');
    select.replaceChildren(
      ...models.map((m) => {
        const o = document.createElement('option');
        o.value = m.manifest;
        o.textContent = [m.name, m.size ? formatBytes(m.size) : '', m.precision].filter(Boolean).join(' · ');
        return o;
      }),
    );
    pick.hidden = models.length === 0;
    this.q('[data-model-line]').hidden = models.length > 0; // the picker names the model (its URL in the title)
    if (current && models.some((m) => m.manifest === current)) select.value = current;
    return models;
  }

  #status(text) {
    this.q('[data-load-text]').textContent = text;
  }

  /** Selects `url` in the picker, adding it (named by its URL) when models.json does not list it. */
  #pick(url) {
    const select = this.q('[data-models]');
    let option = [...select.options].find((o) => o.value === url);
    if (!option && select.options.length > 0) {
      option = Object.assign(document.createElement('option'), { value: url, textContent: `Other model: ${url}` });
      select.append(option);
    }
    if (option) select.value = url;
    select.title = url;
  }

  /** A progress event on the bar and in words. */
  #progress(e) {
    const bar = this.q('[data-bar]');
    if (COUNTED.has(e.phase) && !e.note) {
      bar.max = e.total || 1;
      bar.value = e.loaded;
    } else if (!e.note) {
      bar.removeAttribute('value'); // indeterminate: busy, no count to show
    }
    const text = progressText(e);
    this.#status(text);
    if (!e.note && this.phase !== PHASES[e.phase]) {
      this.phase = PHASES[e.phase] ?? e.phase;
      this.onChange();
    }
  }

  #buttons({ loading = false, failed = false } = {}) {
    this.q('[data-cancel]').hidden = !loading;
    this.q('[data-retry]').hidden = loading || !failed;
    this.q('[data-use-demo]').hidden = loading || !failed || !this.demoUrl || this.demoUrl === this.url;
    this.q('[data-clear]').hidden = loading;
    this.q('[data-models]').disabled = loading;
  }

  #showError(e) {
    const box = this.q('[data-load-error]');
    box.hidden = !e;
    if (!e) return null;
    const x = explain(e);
    this.q('[data-error-title]').textContent = x.title;
    this.q('[data-error-help]').textContent = x.help;
    this.q('[data-error-details]').textContent = x.details;
    this.q('[data-error-url]').textContent = this.url;
    return x;
  }

  /** Loads `url` (after disposing the current model); resolves when it is ready or has failed. */
  async load(url) {
    this.loading?.abort();
    await this.#unload();
    this.url = new URL(url, location.href).href;
    this.q('[data-model-url]').textContent = this.url;
    this.#pick(this.url);
    const ctl = new AbortController();
    this.loading = ctl;
    this.phase = 'starting';
    this.#showError(null);
    this.#buttons({ loading: true });
    this.#status('Starting…');
    this.q('[data-bar]').removeAttribute('value');
    this.onLoading(this.url);
    this.onChange();
    const bar = this.q('[data-bar]');
    try {
      const model = await loadSphinx(this.url, { signal: ctl.signal, device: this.device, onProgress: (e) => this.loading === ctl && this.#progress(e) });
      if (this.loading !== ctl) return model.dispose();
      this.loading = null;
      this.model = model;
      bar.max = 1;
      bar.value = 1;
      this.#ready(model);
    } catch (e) {
      if (this.loading !== ctl) return;
      this.loading = null;
      bar.value = 0;
      this.#failed(e);
    } finally {
      if (this.loading === null) {
        this.phase = null;
        this.#buttons({ loading: false, failed: !this.model });
        this.showCache();
        this.onChange();
      }
    }
  }

  #ready(model) {
    const { model: m, load: l } = model.info;
    const from = l.downloadedBytes ? `${formatBytes(l.downloadedBytes)} downloaded` : 'from this browser\'s storage';
    this.#status(`Ready: ${m.release} (${formatBytes(l.totalBytes)}, ${from}) in ${formatSeconds(l.totalMs / 1000)}.`);
    const [words, more] = deviceWords(model.info);
    const line = this.q('[data-gpu]');
    line.textContent = words;
    line.append(Object.assign(document.createElement('span'), { className: 'gpu-more', textContent: more }));
    this.onLoaded(model);
  }

  #failed(e) {
    if (e?.name === 'AbortError') {
      this.#status('Loading cancelled. What was downloaded is kept: Resume continues from it.');
      this.q('[data-retry]').textContent = 'Resume';
      return;
    }
    this.q('[data-retry]').textContent = 'Retry';
    this.#status('The model is not loaded.');
    this.onError(this.#showError(e));
  }

  async #unload() {
    const m = this.model;
    this.model = null;
    if (m) {
      this.onUnloaded();
      await m.dispose().catch(() => {});
    }
  }

  /** Shows how much the browser stores for the current model. */
  async showCache() {
    if (!this.url) return;
    let n = 0;
    try {
      n = await cachedBytes(this.url);
    } catch {
      n = 0;
    }
    this.stored = n;
    this.q('[data-cache-size]').textContent = n > 0 ? `${formatBytes(n)} stored in this browser` : 'nothing stored';
    this.q('[data-clear]').disabled = n === 0;
  }

  #askClear() {
    this.q('[data-confirm-text]').textContent = `Delete the ${formatBytes(this.stored ?? 0)} of this model stored in this browser? It downloads again next time.`;
    this.q('[data-confirm]').hidden = false;
    this.q('[data-clear]').hidden = true;
    this.q('[data-confirm-no]').focus();
  }

  #hideConfirm() {
    this.q('[data-confirm]').hidden = true;
    this.q('[data-clear]').hidden = false;
    this.q('[data-clear]').focus();
  }

  async #clear() {
    this.#hideConfirm();
    this.loading?.abort();
    await this.#unload();
    try {
      const removed = await clearCache(this.url);
      this.#status(removed ? 'The stored model was deleted. Retry downloads it again.' : 'Nothing was stored.');
    } catch (e) {
      this.#status(`Could not delete the stored model: ${e.message}`);
    }
    this.q('[data-retry]').textContent = 'Download again';
    this.#buttons({ failed: true });
    this.showCache();
    this.onChange();
  }
}

/** Where the model runs, in plain words, and the details: [sentence, details]. */
export function deviceWords({ device, adapter }) {
  if (device?.kind === 'cpu') {
    const { threads, isa, build, why } = device.cpu;
    const t = `${threads} thread${threads === 1 ? '' : 's'}`;
    return [`Running on this computer's processor (CPU, ${t}): ${device.reason}.`, ` (${isa}; ${build} engine: ${why})`];
  }
  const name = adapter.adapter || 'unnamed adapter';
  const slow = adapter.software ? ', a software adapter: expect it to be slow' : '';
  return [`Running on the graphics processor (GPU): ${name}${slow}.`, ` (${adapter.backend}; shader-f16 ${adapter.shaderF16 ? 'available' : 'not available'}; largest buffer ${formatBytes(adapter.maxBufferSize)})`];
}
