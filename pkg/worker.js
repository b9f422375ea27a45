// The model's Web Worker (started by index.js). It streams the manifest's files into the Origin
// Private File System with HTTP Range requests, hashing them in wasm as the bytes arrive (a mismatch
// discards the file and fetches it again; an interrupted file resumes from the bytes stored), then
// builds the model tensor by tensor from synchronous OPFS reads while uploading to WebGPU, and
// answers encodeImage / chat / freeImage / dispose requests one at a time.
//
// Messages in: {id, op, args} and {op: 'abort', target}. Out: {id, type: 'event' | 'result' |
// 'error', ...}.

import init, { GpuDevice, Session, Sha256 } from './wasm/sphinx_web.js';
import { CACHE_DIR, cacheFolder, formatBytes } from './cache.js';
import { NO_WEBGPU } from './errors.js';
import { StopFilter } from './stop.js';

/** Attempts at one file after a SHA-256 mismatch. */
const MAX_DOWNLOADS = 3;
/** Network failures in a row (no byte received in between) before a download gives up. */
const MAX_RETRIES = 5;
/** Bytes read per step when re-hashing a partly downloaded file. */
const HASH_CHUNK = 4 << 20;
/** Progress events per second, at most. */
const EVENTS_PER_SECOND = 10;

let wasm = null;
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
 * Brings one file of the manifest into `dir` as `<sha256>`: resumes `<sha256>.part` from its stored
 * bytes, hashes as it writes, checks size and digest, and renames. Returns the network bytes.
 */
async function download(dir, entry, url, signal, onBytes, onVerify, emitNote) {
  const part = `${entry.sha256}.part`;
  let received = 0;
  for (let attempt = 1; ; attempt++) {
    const fileHandle = await dir.getFileHandle(part, { create: true });
    let access;
    try {
      access = await fileHandle.createSyncAccessHandle();
    } catch (e) {
      throw new Error(`${entry.file}: cannot open the cached file (${e.message}); is the model loading in another tab?`);
    }
    let hasher = new Sha256();
    let digest = null;
    try {
      let pos = access.getSize();
      if (pos > entry.bytes) {
        access.truncate(0);
        pos = 0;
      }
      if (pos > 0) hashStored(access, pos, hasher, (n) => onVerify(entry.file, n, pos));
      let failures = 0;
      while (pos < entry.bytes) {
        signal.throwIfAborted();
        try {
          const resp = await fetch(url, { headers: { Range: `bytes=${pos}-` }, cache: 'no-store', signal });
          if (resp.status === 200) {
            if (pos > 0) {
              // The server ignored the range: start over with the whole body.
              access.truncate(0);
              pos = 0;
              hasher.free();
              hasher = new Sha256();
            }
          } else if (resp.status === 206) {
            const start = Number(/bytes (\d+)-/.exec(resp.headers.get('Content-Range') ?? '')?.[1]);
            if (start !== pos) throw new FatalHttpError(`${entry.file}: asked for bytes ${pos}-, the server sent ${resp.headers.get('Content-Range')}`);
          } else {
            const msg = `${entry.file}: HTTP ${resp.status} ${resp.statusText} from ${url}`;
            if (resp.status >= 400 && resp.status < 500) throw new FatalHttpError(msg);
            throw new Error(msg);
          }
          const reader = resp.body.getReader();
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            if (pos + value.length > entry.bytes) {
              throw new FatalHttpError(`${entry.file}: the server sent more than the ${entry.bytes} bytes the manifest lists`);
            }
            writeAt(access, value, pos, entry);
            hasher.update(value);
            pos += value.length;
            received += value.length;
            failures = 0;
            onBytes(entry.file, value.length, pos);
          }
          if (pos < entry.bytes) throw new Error(`${entry.file}: the response ended at byte ${pos} of ${entry.bytes}`);
        } catch (e) {
          if (signal.aborted) throw signal.reason;
          if (e instanceof FatalHttpError || e instanceof StorageFullError) throw e;
          if (++failures > MAX_RETRIES) throw new Error(`${entry.file}: download failed ${MAX_RETRIES} times in a row: ${e.message}`);
          emitNote(`${entry.file}: ${e.message}; resuming at byte ${pos}`);
          await sleep(200 * 2 ** failures, signal);
        }
      }
      access.flush();
      digest = hasher.finish();
      hasher = null;
      if (digest !== entry.sha256) access.truncate(0);
    } finally {
      hasher?.free();
      try {
        access.flush();
      } catch {}
      access.close();
    }
    if (digest === entry.sha256) {
      await fileHandle.move(entry.sha256);
      return received;
    }
    await dir.removeEntry(part);
    const msg = `${entry.file}: SHA-256 mismatch (got ${digest}, the manifest says ${entry.sha256})`;
    if (attempt >= MAX_DOWNLOADS) throw new Error(`${msg} in ${attempt} downloads; the copy on the server is corrupt`);
    emitNote(`${msg}; discarded, downloading it again`);
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

const OPS = {
  async load({ url, persisted, precision, autotune, limits }, { signal, emit }) {
    const t0 = performance.now();
    wasm ??= await init();
    if (!globalThis.navigator?.gpu) throw new Error(NO_WEBGPU);
    device = await GpuDevice.open(limits);
    const adapter = JSON.parse(device.info());

    const resp = await fetch(url, { cache: 'no-store', signal });
    if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status} ${resp.statusText}`);
    const manifestBytes = new Uint8Array(await resp.arrayBuffer());
    let manifest;
    try {
      manifest = JSON.parse(new TextDecoder().decode(manifestBytes));
    } catch (e) {
      throw new Error(`${url}: not JSON (${e.message})`);
    }
    if (!manifest.tokenizer) throw new Error(`${url}: the manifest lists no tokenizer`);
    device.checkManifest(manifestBytes);
    const files = [manifest.tokenizer, ...manifest.shards];
    const dir = await cacheFolder(url, true);

    // What is stored already; what is missing; whether it fits.
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
    const missing = total - stored;
    if (missing > 0 && navigator.storage?.estimate) {
      const { quota = Infinity, usage = 0 } = await navigator.storage.estimate();
      if (quota - usage < missing) {
        const e = new Error(
          `not enough browser storage for this model: ${formatBytes(missing)} still to download, ` +
            `${formatBytes(Math.max(0, quota - usage))} available (quota ${formatBytes(quota)}, ${formatBytes(usage)} used; ` +
            `persistent storage ${persisted ? 'granted' : 'not granted'}). Free disk space or clear this site's data, then reload.`,
        );
        e.name = 'QuotaExceededError';
        throw e;
      }
    }
    const note = (message) => emit({ phase: 'download', note: message, loaded: stored, total, bytesPerSecond: 0 });
    const tDownload = performance.now();
    let network = 0;
    const dl = progress(emit, 'download', total);
    const verify = progress(emit, 'verify', 0);
    dl(todo[0]?.file ?? null, stored, { force: true });
    for (const f of todo) {
      const fileUrl = new URL(f.file, url).href;
      network += await download(
        dir,
        f,
        fileUrl,
        signal,
        (file, n, at) => {
          stored += n;
          dl(file, stored, { network: n, fileLoaded: at, fileTotal: f.bytes });
        },
        (file, at, of) => verify(file, at, { total: of, fileLoaded: at, fileTotal: of }),
        note,
      );
    }
    dl(null, total, { force: true });
    await removeStale(dir, new Set(files.map((f) => f.sha256)));
    const downloadMs = performance.now() - tDownload;
    signal.throwIfAborted();

    // Build the model straight from OPFS, tensor by tensor, uploading as it reads.
    const tUpload = performance.now();
    const tokenizer = new Uint8Array(await (await (await dir.getFileHandle(manifest.tokenizer.sha256)).getFile()).arrayBuffer());
    const opened = new Map();
    const handles = [];
    try {
      for (const s of manifest.shards) {
        if (!opened.has(s.sha256)) {
          opened.set(s.sha256, await (await dir.getFileHandle(s.sha256)).createSyncAccessHandle());
        }
        handles.push(opened.get(s.sha256));
      }
      signal.throwIfAborted();
      const up = progress(emit, 'upload', manifest.shards.reduce((s, f) => s + f.bytes, 0));
      up(null, 0, { force: true });
      session = Session.load(device, manifestBytes, tokenizer, handles, (read, of) => up(null, read, { fileLoaded: read, fileTotal: of }), precision);
      up(null, manifest.shards.reduce((s, f) => s + f.bytes, 0), { force: true });
    } finally {
      for (const h of opened.values()) h.close();
    }
    const uploadMs = performance.now() - tUpload;
    emit({ phase: 'autotune', file: null, loaded: 0, total: 1, bytesPerSecond: 0 });
    const tuning = await tune(autotune);
    emit({ phase: 'autotune', file: null, loaded: 1, total: 1, bytesPerSecond: 0 });
    const tCompile = performance.now();
    emit({ phase: 'compile', file: null, loaded: 0, total: 1, bytesPerSecond: 0 });
    await session.warmup();
    emit({ phase: 'compile', file: null, loaded: 1, total: 1, bytesPerSecond: 0 });
    const compileMs = performance.now() - tCompile;
    signal.throwIfAborted();
    return {
      adapter,
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
    const filter = stop?.length ? new StopFilter(stop) : null;
    let stopped = false;
    const result = JSON.parse(
      await session.chat(JSON.stringify({ system, messages, image, maxTokens, temperature, topP, seed }), (tokenId, delta) => {
        if (signal.aborted) return false;
        firstTokenMs ??= performance.now() - t0;
        let text = delta;
        if (filter) ({ text, stopped } = filter.push(delta));
        if (tokenId >= 0 || text) emit({ tokenId: tokenId >= 0 ? tokenId : null, text });
        return !stopped;
      }),
    );
    signal.throwIfAborted();
    const tail = stopped ? '' : filter?.flush();
    if (tail) emit({ tokenId: null, text: tail });
    const finish = stopped ? 'stop' : result.finish;
    return { ...result, finish, firstTokenMs, totalMs: performance.now() - t0 };
  },

  async dispose() {
    session?.free();
    session = null;
    device?.free();
    device = null;
    return true;
  },
};
