// sphinx-web: SPHINX (LLaMA2-Accessory) multimodal LLM in the browser. The package entry, on the
// page's thread: it starts a Web Worker (worker.js) that downloads the model into the Origin Private
// File System, builds it on WebGPU from the wasm engine and answers questions, and it talks to that
// worker by messages — the page's thread never blocks. Types: index.d.ts.

import { CACHE_DIR, cacheFolder, cacheKey } from './cache.js';
import { NO_WEBGPU } from './errors.js';
import { openaiApi } from './openai.js';
import { parseAnswer } from './tasks.js';

export { TASKS, taskPrompt, regionText, parseAnswer, taskIds } from './tasks.js';
export { OpenAIError } from './openai.js';
export { explain } from './errors.js';

const WORKER_URL = new URL('./worker.js', import.meta.url);

function abortError(message = 'The operation was aborted.') {
  return new DOMException(message, 'AbortError');
}

function errorFrom({ name, message }) {
  if (name === 'AbortError') return abortError(message);
  const e = new Error(message);
  if (name && name !== 'Error') e.name = name;
  return e;
}

/** Request/response over one worker; events stream to the caller's onEvent. */
class WorkerRpc {
  #worker;
  #next = 1;
  #pending = new Map();
  #dead = null;

  constructor(worker) {
    this.#worker = worker;
    worker.onmessage = (ev) => this.#receive(ev.data);
    worker.onerror = (ev) => {
      ev.preventDefault?.();
      this.kill(new Error(`the SPHINX worker failed: ${ev.message || 'could not start (is worker.js served as JavaScript?)'}`));
    };
    worker.onmessageerror = () => this.kill(new Error('the SPHINX worker sent a message that could not be read'));
  }

  /** Starts `op`; returns { id, promise }. An abort of `signal` asks the worker to stop and
   *  rejects with the AbortError once it has (or after `abortGraceMs`, killing the worker). */
  call(op, args, { onEvent, signal, transfer = [], abortGraceMs = 0 } = {}) {
    const id = this.#next++;
    const promise = new Promise((resolve, reject) => {
      if (this.#dead) return reject(this.#dead);
      if (signal?.aborted) return reject(signal.reason ?? abortError());
      let onAbort = null;
      const settle = (fn, v) => {
        if (!this.#pending.has(id)) return;
        this.#pending.delete(id);
        if (onAbort) signal.removeEventListener('abort', onAbort);
        fn(v);
      };
      this.#pending.set(id, { onEvent, resolve: (v) => settle(resolve, v), reject: (e) => settle(reject, e) });
      if (signal) {
        onAbort = () => {
          this.#worker.postMessage({ op: 'abort', target: id });
          if (abortGraceMs > 0) {
            setTimeout(() => {
              if (this.#pending.has(id)) this.kill(signal.reason ?? abortError());
            }, abortGraceMs);
          }
        };
        signal.addEventListener('abort', onAbort, { once: true });
      }
      this.#worker.postMessage({ id, op, args }, transfer);
    });
    return { id, promise };
  }

  cancel(id) {
    if (this.#pending.has(id)) this.#worker.postMessage({ op: 'abort', target: id });
  }

  #receive(msg) {
    const p = this.#pending.get(msg.id);
    if (!p) return;
    if (msg.type === 'event') p.onEvent?.(msg.data);
    else if (msg.type === 'result') p.resolve(msg.value);
    else if (msg.type === 'error') p.reject(errorFrom(msg.error));
  }

  /** Ends the worker; every pending call rejects with `error`. */
  kill(error = new Error('the model was disposed')) {
    if (!this.#dead) {
      this.#dead = error;
      this.#worker.terminate();
    }
    for (const p of [...this.#pending.values()]) p.reject(error);
    this.#pending.clear();
  }

  get dead() {
    return this.#dead;
  }
}

/**
 * Downloads (or finds in the browser's storage) the converted model `manifestUrl` points to and
 * builds it inside a Web Worker on `device`: 'auto' (the GPU, unless the browser has no WebGPU, no
 * adapter or only a software one: then the CPU backend), 'gpu' (an error without a GPU) or 'cpu'.
 * The CPU backend splits its work over `threads` workers (default: navigator.hardwareConcurrency)
 * where the page is cross-origin isolated, one thread otherwise; `info.device` says which and why.
 */
export async function loadSphinx(manifestUrl, { onProgress, signal, precision = 'auto', autotune = 'cached', limits = 'adapter', device = 'auto', threads } = {}) {
  // precision, autotune, limits and device are checked by the engine's parsers (the worker's first
  // step: checkLoadOptions), which name the option and what it takes
  if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1 && threads <= 64)) {
    throw new TypeError(`loadSphinx: threads must be an integer in 1..64, not ${JSON.stringify(threads)}`);
  }
  const url = new URL(manifestUrl, globalThis.location?.href).href;
  signal?.throwIfAborted();
  // Checked here too (the worker checks again): no worker, wasm or download without WebGPU when
  // the GPU is asked for.
  if (device === 'gpu' && !globalThis.navigator?.gpu) throw new Error(NO_WEBGPU);
  // Persistent storage keeps the browser from evicting gigabytes of weights under pressure; it is
  // a request (Window only), and refusing it is not an error.
  let persisted = false;
  try {
    persisted = (await navigator.storage?.persisted?.()) || (await navigator.storage?.persist?.()) || false;
  } catch {
    persisted = false;
  }
  signal?.throwIfAborted();
  const rpc = new WorkerRpc(new Worker(WORKER_URL, { type: 'module', name: 'sphinx' }));
  try {
    // During the (synchronous) upload the worker cannot read messages: an abort then ends it.
    // A page whose navigator has no WebGPU (a policy, a test) gets none in its worker either.
    const pageGpu = !!globalThis.navigator?.gpu;
    const { promise } = rpc.call('load', { url, persisted, precision, autotune, limits, device, threads, pageGpu }, { onEvent: onProgress, signal, abortGraceMs: 2000 });
    const info = await promise;
    return new SphinxModel(rpc, url, info);
  } catch (e) {
    rpc.kill(e);
    throw e;
  }
}

/** Removes everything stored for `manifestUrl`. Resolves to whether anything was there. Fails
 *  while a load of that model is in progress. */
export async function clearCache(manifestUrl) {
  const url = new URL(manifestUrl, globalThis.location?.href).href;
  const root = await navigator.storage.getDirectory();
  let top;
  try {
    top = await root.getDirectoryHandle(CACHE_DIR);
  } catch (e) {
    if (e.name === 'NotFoundError') return false;
    throw e;
  }
  try {
    await top.removeEntry(await cacheKey(url), { recursive: true });
    return true;
  } catch (e) {
    if (e.name === 'NotFoundError') return false;
    throw e;
  }
}

/** Bytes stored for `manifestUrl` (complete and partial files). */
export async function cachedBytes(manifestUrl) {
  const url = new URL(manifestUrl, globalThis.location?.href).href;
  const dir = await cacheFolder(url, false);
  if (!dir) return 0;
  let n = 0;
  for await (const handle of dir.values()) {
    if (handle.kind === 'file') n += (await handle.getFile()).size;
  }
  return n;
}

/** A string as the browser sends text (TextEncoder): a lone surrogate becomes U+FFFD. */
const wellFormed = (s) => (s.toWellFormed ? s.toWellFormed() : s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD'));

function pixelsOf(imageData) {
  const { data, width, height } = imageData ?? {};
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new TypeError('encodeImage: expected an ImageData or {data, width, height} with positive integer sizes');
  }
  if (!data || data.length !== width * height * 4) {
    throw new TypeError(`encodeImage: ${width}x${height} RGBA needs ${width * height * 4} bytes, got ${data?.length}`);
  }
  // A copy, transferred to the worker (the caller's pixels stay usable).
  return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
}

/** An image encoded by the model; its embeddings stay on the GPU until dispose(). */
class SphinxImage {
  #model;
  constructor(model, id, width, height, encodeMs) {
    this.#model = model;
    this.id = id;
    this.width = width;
    this.height = height;
    this.encodeMs = encodeMs;
  }
  get model() {
    return this.#model;
  }
  /** Frees the embeddings. */
  async dispose() {
    await this.#model._freeImage(this.id);
  }
}

class SphinxModel {
  #rpc;
  #openai = null;
  #disposed = false;
  constructor(rpc, manifestUrl, info) {
    this.#rpc = rpc;
    this.manifestUrl = manifestUrl;
    /** { adapter, device, model, load, gpu } as reported by the worker. */
    this.info = info;
  }

  #alive() {
    if (this.#rpc.dead) throw this.#rpc.dead;
  }

  /** Encodes an image (canvas ImageData or {data, width, height} RGBA) once; ask about it any
   *  number of times. */
  async encodeImage(imageData, { signal } = {}) {
    this.#alive();
    const pixels = pixelsOf(imageData);
    const { width, height } = imageData;
    const { promise } = this.#rpc.call('encodeImage', { pixels, width, height }, { transfer: [pixels.buffer], signal });
    const { id, ms } = await promise;
    return new SphinxImage(this, id, width, height, ms);
  }

  async _freeImage(id) {
    if (this.#rpc.dead) return;
    await this.#rpc.call('freeImage', { id }).promise;
  }

  /**
   * Answers the last user message; yields { tokenId, text } as tokens are generated (tokenId null
   * for a final piece of text that no new token brought). The iterator's return value is
   * { finish: 'stop' | 'length', tokens, promptTokens, firstTokenMs, totalMs } (promptTokens: the
   * text's; an image adds info.model.imageWords positions). Text is sent as the browser sends it:
   * a lone surrogate becomes U+FFFD.
   */
  async *chat({ system, messages, image, maxTokens = 512, temperature = 0.1, topP = 0.5, seed = 0, stop = [], signal } = {}) {
    this.#alive();
    if (!Array.isArray(messages) || messages.length === 0) throw new TypeError('chat: messages must be a non-empty array');
    for (const m of messages) {
      if ((m?.role !== 'user' && m?.role !== 'assistant') || typeof m.content !== 'string') {
        throw new TypeError("chat: each message is {role: 'user' | 'assistant', content: string}");
      }
    }
    if (system !== undefined && typeof system !== 'string') throw new TypeError('chat: system must be a string');
    // how many and how long: the engine's rule (crate/src/text/stop.rs), which rejects the call
    if (!Array.isArray(stop) || !stop.every((s) => typeof s === 'string')) throw new TypeError('chat: stop must be an array of strings');
    if (image && image.model !== this) throw new TypeError('chat: the image was encoded by another model');
    const most = this.info.model.limits.maxTokens;
    if (!Number.isSafeInteger(maxTokens) || maxTokens < 1 || maxTokens > most) {
      throw new TypeError(`chat: maxTokens must be a whole number from 1 to ${most} (the longest context), not ${maxTokens}`);
    }
    if (!Number.isSafeInteger(seed) || seed < 0) throw new TypeError('chat: seed must be a non-negative integer');
    if (!(temperature >= 0 && temperature < Infinity) || !(topP > 0 && topP <= 1)) throw new TypeError('chat: temperature must be a finite number >= 0 and topP in (0, 1]');
    const queue = [];
    let wake = null;
    let outcome = null;
    const { id, promise } = this.#rpc.call(
      'chat',
      {
        system: system === undefined ? undefined : wellFormed(system),
        messages: messages.map(({ role, content }) => ({ role, content: wellFormed(content) })),
        stop: stop.map(wellFormed),
        image: image ? image.id : 0,
        maxTokens,
        temperature,
        topP,
        seed,
      },
      {
        signal,
        onEvent: (e) => {
          queue.push(e);
          wake?.();
        },
      },
    );
    promise.then(
      (value) => (outcome = { value }),
      (error) => (outcome = { error }),
    ).finally(() => wake?.());
    try {
      for (;;) {
        if (queue.length > 0) {
          yield queue.shift();
          continue;
        }
        if (outcome) {
          if (outcome.error) throw outcome.error;
          return outcome.value;
        }
        await new Promise((r) => (wake = r));
        wake = null;
      }
    } finally {
      if (!outcome) this.#rpc.cancel(id); // the caller stopped iterating early
    }
  }

  /** Boxes, points and table of an answer, in the pixels of `image` ({width, height}); the same
   *  as the package's `parseAnswer` (it needs no model). */
  async parseAnswer(answer, size) {
    return parseAnswer(answer, size);
  }

  /** Runs every linear-kernel variant the autotuner may pick, on every weight format this GPU
   *  reads, against the engine's CPU reference: `{runs, maxAbsError, failures}`. */
  async kernelSelfTest() {
    this.#alive();
    return this.#rpc.call('selfTest', {}).promise;
  }

  /** Times one question on this device (see `sphinx bench`): the phases (image encode and each
   *  vision tower alone when `image` pixels are given, prefill of `promptTokens` ids (or BOS and the
   *  tokens of `text`, to give another engine the same prompt), `tokens`
   *  greedy decode steps with the bandwidth they imply, medians of `reps`) and every linear shape
   *  of the model with its kernel variant; with `roofline`, also the device's read and copy
   *  bandwidth and best f32 GEMM measured in the same run, and each phase and kernel as a share. */
  async bench({ image, tokens = 16, promptTokens = 48, reps = 1, text, roofline = false } = {}) {
    this.#alive();
    const pixels = image ? pixelsOf(image) : null;
    const plan = { tokens, promptTokens, reps, text, roofline };
    const args = { pixels, width: image?.width ?? 0, height: image?.height ?? 0, plan };
    return this.#rpc.call('bench', args, { transfer: pixels ? [pixels.buffer] : [] }).promise;
  }

  /** Destroys this model's GPU device, as a lost device (driver reset, GPU removed) would: every
   *  later call fails saying so, and a new loadSphinx works. For tests of that path. */
  async loseDevice() {
    this.#alive();
    return this.#rpc.call('loseDevice', {}).promise;
  }

  /** `{allocatedBytes, peakBytes}` of GPU buffers now. */
  async gpuMemory() {
    this.#alive();
    return this.#rpc.call('gpuMemory', {}).promise;
  }

  /** `{wasmHeapBytes, gpu: {allocatedBytes, peakBytes}}`: the engine's wasm memory (where the CPU
   *  backend keeps weights, activations and the KV cache; it only grows, so this is its peak) and
   *  the GPU's buffers. */
  async memory() {
    this.#alive();
    return this.#rpc.call('memory', {}).promise;
  }

  /** OpenAI's chat API over this model: `model.openai.chat.completions.create(request)`. */
  get openai() {
    this.#openai ??= openaiApi(this);
    return this.#openai;
  }

  /** Whether dispose() was called (every later call fails saying so). */
  get disposed() {
    return this.#disposed;
  }

  /** Frees the GPU memory and ends the worker. The downloaded weights stay cached. */
  async dispose() {
    this.#disposed = true;
    if (this.#rpc.dead) return;
    try {
      await this.#rpc.call('dispose', {}).promise;
    } finally {
      this.#rpc.kill(new Error('the model was disposed'));
    }
  }
}
