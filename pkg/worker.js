// The model's Web Worker (started by index.js). It picks the engine build (the threaded one, with a
// pool of workers on shared memory, where the page is cross-origin isolated; else one thread) and
// the device (WebGPU, or the CPU backend when there is no WebGPU, no adapter or only a software
// one), streams the manifest's files into the Origin Private File System with HTTP Range requests,
// hashing them in wasm as the bytes arrive (a mismatch discards the file and fetches it again; an
// interrupted file resumes from the bytes stored), then builds the model tensor by tensor from
// synchronous OPFS reads while uploading to WebGPU (or into wasm memory for the CPU), and answers
// encodeImage / chat / freeImage / dispose requests one at a time.
//
// Messages in: {id, op, args} and {op: 'abort', target}. Out: {id, type: 'event' | 'result' |
// 'error', ...}.

import { CACHE_DIR, cacheFolder, formatBytes } from './cache.js';
import { NO_WEBGPU } from './errors.js';

/** Attempts at one file after a SHA-256 mismatch. */
const MAX_DOWNLOADS = 3;
/** Failed requests for one file (whatever each brought) before its download gives up. */
const MAX_RETRIES = 5;
/** Bytes read per step when re-hashing a partly downloaded file. */
const HASH_CHUNK = 4 << 20;
/** Progress events per second, at most. */
const EVENTS_PER_SECOND = 10;

/** The engine module (the threaded or the single-threaded build) and its memory. */
let api = null;
let wasm = null;
/** How the engine runs: {threaded, threads, why} (see engine()). */
let build = null;
let device = null;
let session = null;
/** Why the model can no longer be used (device lost), if it can't. */
let broken = null;
/** Abort controllers of the requests started or queued, by id. */
const controllers = new Map();
let queue = Promise.resolve();

const post = (msg) => self.postMessage(msg);

self.onmessage = (ev) => {
  const msg = ev.data;
  if (msg.op === 'abort') {
    controllers.get(msg.target)?.abort(new DOMException('The operation was aborted.', 'AbortError'));
    return;
  }
  const ctl = new AbortController();
  if (msg.op === 'loseDevice') {
    // Not queued: it acts on the answer now being made, as a real device loss would.
    run(msg, ctl.signal);
    return;
  }
  controllers.set(msg.id, ctl);
  queue = queue.then(() => run(msg, ctl.signal)).finally(() => controllers.delete(msg.id));
};

async function run({ id, op, args }, signal) {
  const emit = (data) => post({ id, type: 'event', data });
  try {
    signal.throwIfAborted();
    const fn = OPS[op];
    if (!fn) throw new Error(`unknown request ${op}`);
    const value = await fn(args, { signal, emit });
    post({ id, type: 'result', value });
  } catch (e) {
    await settle(e);
    const error = { name: e?.name ?? 'Error', message: describe(e) };
    post({ id, type: 'error', error });
  }
}

/** Longest wait for the device's own word after a GPU call failed. */
const SETTLE_MS = 2000;

/**
 * A lost device makes the GPU call in flight fail (a readback's map_async) before the browser
 * resolves `GPUDevice.lost`: after a GPU failure, wait until the device has said why (its lost or
 * error callback), at most SETTLE_MS, so that the error names the lost device.
 */
async function settle(e) {
  const msg = e?.message ?? String(e);
  if (!device || !/^gpu:|map_async/i.test(msg)) return;
  for (const t0 = performance.now(); !device.lastError() && performance.now() - t0 < SETTLE_MS; ) {
    await new Promise((r) => setTimeout(r, 10));
  }
}

function describe(e) {
  const msg = e?.message ?? String(e);
  const lost = device?.lastError();
  if (lost && lost.includes('device lost')) {
    broken = `${lost}. Load the model again (its weights stay cached).`;
    return broken;
  }
  return msg;
}

function alive() {
  if (broken) throw new Error(broken);
  if (!session) throw new Error('the model is not loaded');
}

/** A throttled progress reporter for one phase. */
function progress(emit, phase, total) {
  let last = 0;
  const window = []; // [time, bytes] samples of the last seconds, for the speed
  return (file, loaded, { force = false, network = 0, fileLoaded, fileTotal, total: of = total } = {}) => {
    const now = performance.now();
    if (network > 0) {
      window.push([now, network]);
      while (window.length > 1 && now - window[0][0] > 3000) window.shift();
    }
    if (!force && now - last < 1000 / EVENTS_PER_SECOND) return;
    last = now;
    const span = window.length > 0 ? (now - window[0][0]) / 1000 : 0;
    const bytes = window.reduce((s, w) => s + w[1], 0);
    const bytesPerSecond = span > 0.2 ? bytes / span : 0;
    emit({ phase, file, loaded, total: of, bytesPerSecond, fileLoaded, fileTotal });
  };
}

const sleep = (ms, signal) =>
  new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(t), reject(signal.reason)), { once: true });
  });

async function fileSize(dir, name) {
  try {
    return (await (await dir.getFileHandle(name)).getFile()).size;
  } catch (e) {
    if (e.name === 'NotFoundError') return -1;
    throw e;
  }
}

/** Re-hashes the bytes already stored of a partial file. */
function hashStored(handle, size, hasher, report) {
  const buf = new Uint8Array(Math.min(HASH_CHUNK, size));
  let at = 0;
  while (at < size) {
    const n = handle.read(buf.subarray(0, Math.min(buf.length, size - at)), { at });
    if (n <= 0) throw new Error(`stored file ended at ${at} of ${size} bytes`);
    hasher.update(buf.subarray(0, n));
    at += n;
    report(at);
  }
}

class FatalHttpError extends Error {}

/** The origin's storage quota ran out while writing (what estimate() promised was not there). */
class StorageFullError extends Error {
  constructor(message) {
    super(message);
    this.name = 'QuotaExceededError';
  }
}

/** Writes at `pos`; a full storage becomes a StorageFullError (not retried: refetching cannot help). */
function writeAt(access, bytes, pos, entry) {
  try {
    access.write(bytes, { at: pos });
  } catch (e) {
    if (e?.name !== 'QuotaExceededError') throw e;
    throw new StorageFullError(
      `not enough browser storage for this model: storing ${entry.file} failed at byte ${pos} of ${entry.bytes} ` +
        `(${e.message}). The bytes stored so far are kept and the next load resumes from them; free disk space or ` +
        `clear this site's data, then reload.`,
    );
  }
}

/**
 * Checks the status of a response to `Range: bytes=pos-`: 206 from `pos`, or 200 with the whole
 * file (its stored part is then restarted). A 200 whose body is not the whole file (a CDN's error
 * page) is a failure, and the stored part is kept. Returns whether the body starts the file over.
 */
function checkStatus(resp, pos, entry, where) {
  if (resp.status === 206) {
    const start = Number(/bytes (\d+)-/.exec(resp.headers.get('Content-Range') ?? '')?.[1]);
    if (start !== pos) throw new FatalHttpError(`${where}: asked for bytes ${pos}-, the server sent ${resp.headers.get('Content-Range')}`);
    return false;
  }
  if (resp.status === 200) {
    const length = resp.headers.get('Content-Length');
    if (length !== null && Number(length) !== entry.bytes) {
      const type = resp.headers.get('Content-Type');
      throw new Error(`${where}: the server answered the request for bytes ${pos}- with 200 and a ${length}-byte body${type ? ` (${type})` : ''}, not the ${entry.bytes}-byte file`);
    }
    return pos > 0;
  }
  const msg = `${where}: HTTP ${resp.status} ${resp.statusText}`;
  if (resp.status >= 400 && resp.status < 500) throw new FatalHttpError(msg);
  throw new Error(msg);
}

/**
 * Brings one file of the manifest into `dir` as `<sha256>`: resumes `<sha256>.part` from its stored
 * bytes, hashes as it writes, checks size and digest, and renames. Every failed request counts
 * against the file's MAX_RETRIES, whatever it brought. Returns the network bytes.
 */
async function download(dir, entry, url, signal, onBytes, onVerify, emitNote) {
  const part = `${entry.sha256}.part`;
  const where = `${entry.file} (${url})`;
  const ctx = { entry, url, where, signal, onBytes, onVerify, emitNote, received: 0, failures: 0 };
  for (let attempt = 1; ; attempt++) {
    const fileHandle = await dir.getFileHandle(part, { create: true });
    const digest = await fillPart(fileHandle, ctx);
    if (digest === entry.sha256) {
      await fileHandle.move(entry.sha256);
      return ctx.received;
    }
    await dir.removeEntry(part);
    const msg = `${where}: SHA-256 mismatch (got ${digest}, the manifest says ${entry.sha256})`;
    if (attempt >= MAX_DOWNLOADS) throw new Error(`${msg} in ${attempt} downloads; the copy on the server is corrupt`);
    emitNote(`${msg}; discarded, downloading it again`);
  }
}

/** Fills the `.part` file to the entry's size (its stored bytes hashed first, then requests for the
 *  rest, retried) and returns its SHA-256; a file whose digest is wrong is emptied. */
async function fillPart(fileHandle, ctx) {
  const { entry, where, signal } = ctx;
  let access;
  try {
    access = await fileHandle.createSyncAccessHandle();
  } catch (e) {
    throw new Error(`${where}: cannot open the cached file (${e.message}); is the model loading in another tab?`);
  }
  ctx.access = access;
  ctx.hasher = new api.Sha256();
  try {
    ctx.pos = access.getSize();
    if (ctx.pos > entry.bytes) {
      access.truncate(0);
      ctx.pos = 0;
    }
    const stored = ctx.pos;
    if (stored > 0) hashStored(access, stored, ctx.hasher, (n) => ctx.onVerify(entry.file, n, stored));
    while (ctx.pos < entry.bytes) {
      signal.throwIfAborted();
      try {
        await requestRest(ctx);
      } catch (e) {
        if (signal.aborted) throw signal.reason;
        if (e instanceof FatalHttpError || e instanceof StorageFullError) throw e;
        const why = e.message.startsWith(where) ? e.message.slice(where.length + 2) : e.message;
        if (++ctx.failures > MAX_RETRIES) throw new Error(`${where}: download failed: ${ctx.failures} requests failed, the last with: ${why}`);
        ctx.emitNote(`${entry.file}: ${why}; resuming at byte ${ctx.pos} (attempt ${ctx.failures + 1} of ${MAX_RETRIES + 1})`);
        await sleep(200 * 2 ** ctx.failures, signal);
      }
    }
    access.flush();
    const digest = ctx.hasher.finish();
    ctx.hasher = null;
    if (digest !== entry.sha256) access.truncate(0);
    return digest;
  } finally {
    ctx.hasher?.free();
    try {
      access.flush();
    } catch {}
    access.close();
  }
}

/** One request for the file's bytes from `ctx.pos` on, written and hashed as they come (`ctx.pos`
 *  follows them, so a failed request's bytes are kept); a server that ignores the range restarts
 *  the file. */
async function requestRest(ctx) {
  const { access, entry, url, where, signal } = ctx;
  let resp = null;
  try {
    resp = await fetch(url, { headers: { Range: `bytes=${ctx.pos}-` }, cache: 'no-store', signal });
    if (checkStatus(resp, ctx.pos, entry, where)) {
      // The server ignored the range and sends the whole file: start over with it.
      access.truncate(0);
      ctx.pos = 0;
      ctx.hasher.free();
      ctx.hasher = new api.Sha256();
    }
    const reader = resp.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (ctx.pos + value.length > entry.bytes) {
        throw new FatalHttpError(`${where}: the server sent more than the ${entry.bytes} bytes the manifest lists`);
      }
      writeAt(access, value, ctx.pos, entry);
      ctx.hasher.update(value);
      ctx.pos += value.length;
      ctx.received += value.length;
      ctx.onBytes(entry.file, value.length, ctx.pos);
    }
    if (ctx.pos < entry.bytes) throw new Error(`${where}: the response ended at byte ${ctx.pos} of ${entry.bytes}`);
  } catch (e) {
    resp?.body?.cancel().catch(() => {});
    throw e;
  }
}

/** Removes files of the folder that the manifest no longer lists (an older version's shards). */
async function removeStale(dir, keep) {
  const names = [];
  for await (const [name] of dir.entries()) names.push(name);
  for (const name of names) {
    if (!keep.has(name) && !keep.has(name.replace(/\.part$/, ''))) {
      await dir.removeEntry(name).catch(() => {});
    }
  }
}

/** The kernel choices tuned on this device (shared by every model of the origin). */
const AUTOTUNE_FILE = 'autotune.json';

async function readAutotune() {
  try {
    const top = await (await navigator.storage.getDirectory()).getDirectoryHandle(CACHE_DIR, { create: true });
    return await (await (await top.getFileHandle(AUTOTUNE_FILE)).getFile()).text();
  } catch {
    return '';
  }
}

async function writeAutotune(text) {
  const top = await (await navigator.storage.getDirectory()).getDirectoryHandle(CACHE_DIR, { create: true });
  const handle = await top.getFileHandle(AUTOTUNE_FILE, { create: true });
  const access = await handle.createSyncAccessHandle();
  try {
    const bytes = new TextEncoder().encode(text);
    access.truncate(0);
    access.write(bytes, { at: 0 });
    access.flush();
  } finally {
    access.close();
  }
}

/** Tunes the kernels for the loaded model's shapes (see kernels/tune.rs); stores new choices. */
async function tune(mode) {
  const { cache, report } = JSON.parse(await session.autotune(mode, await readAutotune()));
  if (report.tuned > 0) {
    try {
      await writeAutotune(cache);
    } catch (e) {
      report.storeError = e.message; // the next load tunes again; nothing else is lost
    }
  }
  return report;
}

/**
 * A wasm module using `i32x4.relaxed_dot_i8x16_i7x16_add_s` (and so SIMD128): WebAssembly.validate
 * tells whether the browser can run the threaded build, which is made with relaxed SIMD.
 */
const RELAXED_DOT_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, 0x03, 0x02, 0x01, 0x00,
  0x0a, 0x13, 0x01, 0x11, 0x00, 0x41, 0x01, 0xfd, 0x0f, 0x41, 0x02, 0xfd, 0x0f, 0x41, 0x03, 0xfd, 0x11, 0xfd, 0x93,
  0x02, 0x0b,
]);

/** Why the threaded build cannot run here, or null when it can. */
function threadedProblem() {
  if (!self.crossOriginIsolated) {
    return 'the page is not cross-origin isolated (it needs Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp)';
  }
  if (typeof SharedArrayBuffer === 'undefined') return 'this browser has no SharedArrayBuffer';
  if (!WebAssembly.validate(RELAXED_DOT_PROBE)) return 'this browser has no wasm relaxed SIMD';
  return null;
}

/**
 * Loads the engine once: the threaded build with a pool of `threads` workers where it can run
 * (threadedProblem), else the single-threaded build. Sets `build` to what was chosen and why.
 */
async function engine(threads) {
  if (api) return api;
  let why = threads > 1 ? threadedProblem() : 'one thread was asked for';
  if (!why) {
    try {
      const m = await import('./wasm/sphinx_web_mt.js');
      wasm = await m.default();
      await m.initThreadPool(threads);
      api = m;
      build = { threaded: true, threads, why: `${threads} threads: the page is cross-origin isolated` };
      return api;
    } catch (e) {
      why = `the threaded build did not start (${e?.message ?? e})`;
    }
  }
  const m = await import('./wasm/sphinx_web.js');
  wasm = await m.default();
  api = m;
  build = { threaded: false, threads: 1, why: `one thread: ${why}` };
  return api;
}

/**
 * The device a load asked for: 'gpu' (an error when WebGPU or an adapter is missing), 'cpu', or
 * 'auto' — the GPU unless the browser has no WebGPU, no adapter, or only a software adapter
 * (SwiftShader, llvmpipe, WARP: the CPU backend is faster than emulated WebGPU). Resolves to
 * {kind, reason, gpu (a GpuDevice or null), adapter (its info or null)}.
 */
async function openDevice(want, limits, pageGpu = true) {
  if (!['auto', 'gpu', 'cpu'].includes(want)) throw new Error(`device ${JSON.stringify(want)}: expected 'auto', 'gpu' or 'cpu'`);
  if (want === 'cpu') return { kind: 'cpu', reason: 'the CPU was asked for', gpu: null, adapter: null };
  if (!globalThis.navigator?.gpu || !pageGpu) {
    if (want === 'gpu') throw new Error(NO_WEBGPU);
    return { kind: 'cpu', reason: 'this browser has no WebGPU', gpu: null, adapter: null };
  }
  let gpu;
  try {
    gpu = await api.GpuDevice.open(limits);
  } catch (e) {
    if (want === 'gpu') throw e;
    return { kind: 'cpu', reason: `no usable GPU: ${e?.message ?? e}`, gpu: null, adapter: null };
  }
  const adapter = JSON.parse(gpu.info());
  if (want === 'auto' && adapter.software) {
    gpu.free();
    const reason = `the only GPU adapter is a software one (${adapter.adapter || 'fallback adapter'}), slower than the CPU backend`;
    return { kind: 'cpu', reason, gpu: null, adapter };
  }
  const reason = want === 'gpu' ? 'the GPU was asked for' : `a GPU adapter (${adapter.adapter || adapter.backend})`;
  return { kind: 'gpu', reason, gpu, adapter };
}

/** The manifest at `url`: its bytes and parsed JSON. Every failure names the manifest and its URL. */
async function fetchManifest(url, signal) {
  const where = `manifest ${url}`;
  let resp;
  try {
    resp = await fetch(url, { cache: 'no-store', signal });
  } catch (e) {
    if (signal.aborted) throw signal.reason;
    throw new Error(`${where}: ${e?.message ?? e} (the server did not answer)`);
  }
  if (!resp.ok) throw new Error(`${where}: HTTP ${resp.status} ${resp.statusText}`);
  let bytes;
  try {
    bytes = new Uint8Array(await resp.arrayBuffer());
  } catch (e) {
    if (signal.aborted) throw signal.reason;
    throw new Error(`${where}: the connection dropped while it was read (${e?.message ?? e})`);
  }
  let manifest;
  try {
    manifest = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new Error(`${where}: not JSON (${e.message})`);
  }
  if (!manifest.tokenizer) throw new Error(`${where}: the manifest lists no tokenizer`);
  return { bytes, manifest };
}

/**
 * Brings every file of the manifest into `dir` (what is stored already is kept; the storage quota
 * is checked first). Returns {downloadMs, network}.
 */
async function downloadAll(dir, manifest, url, persisted, signal, emit) {
  const tDownload = performance.now();
  const files = [manifest.tokenizer, ...manifest.shards];
  let stored = 0;
  const todo = [];
  for (const f of files) {
    if ((await fileSize(dir, f.sha256)) === f.bytes) {
      stored += f.bytes;
      continue;
    }
    if (todo.some((t) => t.sha256 === f.sha256)) continue; // identical files are stored once
    const partial = Math.max(0, await fileSize(dir, `${f.sha256}.part`));
    stored += Math.min(partial, f.bytes);
    todo.push(f);
  }
  const total = files.reduce((s, f) => s + f.bytes, 0);
  await checkQuota(total - stored, persisted);
  const note = (message) => emit({ phase: 'download', note: message, loaded: stored, total, bytesPerSecond: 0 });
  let network = 0;
  const dl = progress(emit, 'download', total);
  const verify = progress(emit, 'verify', 0);
  dl(todo[0]?.file ?? null, stored, { force: true });
  for (const f of todo) {
    const fileUrl = new URL(f.file, url).href;
    const onBytes = (file, n, at) => {
      stored += n;
      dl(file, stored, { network: n, fileLoaded: at, fileTotal: f.bytes });
    };
    const onVerify = (file, at, of) => verify(file, at, { total: of, fileLoaded: at, fileTotal: of });
    network += await download(dir, f, fileUrl, signal, onBytes, onVerify, note);
  }
  dl(null, total, { force: true });
  await removeStale(dir, new Set(files.map((f) => f.sha256)));
  return { downloadMs: performance.now() - tDownload, network, total };
}

/** Fails before any download when the files still missing do not fit the origin's storage. */
async function checkQuota(missing, persisted) {
  if (missing <= 0 || !navigator.storage?.estimate) return;
  const { quota = Infinity, usage = 0 } = await navigator.storage.estimate();
  if (quota - usage >= missing) return;
  const e = new Error(
    `not enough browser storage for this model: ${formatBytes(missing)} still to download, ` +
      `${formatBytes(Math.max(0, quota - usage))} available (quota ${formatBytes(quota)}, ${formatBytes(usage)} used; ` +
      `persistent storage ${persisted ? 'granted' : 'not granted'}). Free disk space or clear this site's data, then reload.`,
  );
  e.name = 'QuotaExceededError';
  throw e;
}

/** Builds the session from the stored shards, on the GPU `gpu` or (null) the CPU. */
async function buildSession(dir, manifest, manifestBytes, gpu, precision, signal, emit) {
  const tokenizer = new Uint8Array(await (await (await dir.getFileHandle(manifest.tokenizer.sha256)).getFile()).arrayBuffer());
  const opened = new Map();
  const handles = [];
  try {
    for (const s of manifest.shards) {
      if (!opened.has(s.sha256)) opened.set(s.sha256, await (await dir.getFileHandle(s.sha256)).createSyncAccessHandle());
      handles.push(opened.get(s.sha256));
    }
    signal.throwIfAborted();
    const weights = manifest.shards.reduce((s, f) => s + f.bytes, 0);
    const up = progress(emit, 'upload', weights);
    up(null, 0, { force: true });
    const onRead = (read, of) => up(null, read, { fileLoaded: read, fileTotal: of });
    const made = gpu
      ? api.Session.load(gpu, manifestBytes, tokenizer, handles, onRead, precision)
      : api.Session.loadCpu(manifestBytes, tokenizer, handles, onRead, precision);
    up(null, weights, { force: true });
    return made;
  } finally {
    for (const h of opened.values()) h.close();
  }
}

const OPS = {
  async load({ url, persisted, precision, autotune, limits, device: want = 'auto', threads, pageGpu }, { signal, emit }) {
    const t0 = performance.now();
    await engine(Math.max(1, Math.min(threads ?? navigator.hardwareConcurrency ?? 1, 16)));
    api.checkLoadOptions(JSON.stringify({ precision, autotune, limits, device: want }));
    const chosen = await openDevice(want, limits, pageGpu);
    device = chosen.gpu;
    const { bytes: manifestBytes, manifest } = await fetchManifest(url, signal);
    if (device) device.checkManifest(manifestBytes);
    else api.checkCpuMemory(manifestBytes);
    const dir = await cacheFolder(url, true);
    const { downloadMs, network, total } = await downloadAll(dir, manifest, url, persisted, signal, emit);
    signal.throwIfAborted();

    const tUpload = performance.now();
    session = await buildSession(dir, manifest, manifestBytes, device, precision, signal, emit);
    const uploadMs = performance.now() - tUpload;
    let tuning = { ms: 0, mode: 'off', shapes: 0, cached: 0, tuned: 0, small: 0, skipped: 0, timer: 'none' };
    let compileMs = 0;
    if (device) {
      emit({ phase: 'autotune', file: null, loaded: 0, total: 1, bytesPerSecond: 0 });
      tuning = await tune(autotune);
      emit({ phase: 'autotune', file: null, loaded: 1, total: 1, bytesPerSecond: 0 });
      const tCompile = performance.now();
      emit({ phase: 'compile', file: null, loaded: 0, total: 1, bytesPerSecond: 0 });
      await session.warmup();
      emit({ phase: 'compile', file: null, loaded: 1, total: 1, bytesPerSecond: 0 });
      compileMs = performance.now() - tCompile;
    }
    signal.throwIfAborted();
    const cpu = JSON.parse(api.cpuInfo());
    return {
      adapter: chosen.adapter,
      device: { kind: chosen.kind, reason: chosen.reason, cpu: { ...cpu, build: build.threaded ? 'threaded' : 'single-threaded', why: build.why } },
      model: JSON.parse(session.info()),
      load: {
        totalBytes: total,
        downloadedBytes: network,
        persisted,
        downloadMs,
        uploadMs,
        compileMs,
        autotuneMs: tuning.ms,
        autotune: tuning,
        totalMs: performance.now() - t0,
        wasmHeapBytes: wasm.memory.buffer.byteLength,
      },
      gpu: JSON.parse(session.gpuMemory()),
    };
  },

  async bench({ pixels, width, height, plan }) {
    alive();
    return JSON.parse(await session.bench(pixels ?? new Uint8Array(0), width ?? 0, height ?? 0, JSON.stringify(plan)));
  },

  async loseDevice() {
    device?.loseDevice();
    return true;
  },

  async selfTest() {
    alive();
    return JSON.parse(await device.selfTest());
  },

  async gpuMemory() {
    alive();
    return JSON.parse(session.gpuMemory());
  },

  /** The wasm heap (the CPU backend's weights, activations and KV cache live there; it only
   *  grows, so its size is its peak) and the GPU's buffers. */
  async memory() {
    alive();
    return { wasmHeapBytes: wasm.memory.buffer.byteLength, gpu: JSON.parse(session.gpuMemory()) };
  },

  async encodeImage({ pixels, width, height }, { signal }) {
    alive();
    const t0 = performance.now();
    const id = await session.encodeImage(pixels, width, height);
    if (signal.aborted) {
      session.freeImage(id);
      throw signal.reason;
    }
    return { id, ms: performance.now() - t0 };
  },

  async freeImage({ id }) {
    return session?.freeImage(id) ?? false;
  },

  async chat({ system, messages, image, maxTokens, temperature, topP, seed, stop }, { signal, emit }) {
    alive();
    const t0 = performance.now();
    let firstTokenMs = null;
    // the engine ends the answer before a stop text and holds back what may become one
    const result = JSON.parse(
      await session.chat(JSON.stringify({ system, messages, image, maxTokens, temperature, topP, seed, stop: stop ?? [] }), (tokenId, text) => {
        if (signal.aborted) return false;
        firstTokenMs ??= performance.now() - t0;
        if (tokenId >= 0 || text) emit({ tokenId: tokenId >= 0 ? tokenId : null, text });
        return true;
      }),
    );
    signal.throwIfAborted();
    return { ...result, firstTokenMs, totalMs: performance.now() - t0 };
  },

  async dispose() {
    session?.free();
    session = null;
    device?.free();
    device = null;
    return true;
  },
};
