// `make bench-peers`: ours against the engines a user would pick instead, on this machine, the same
// weights, in one run (not part of `make test`).
//
//   1. the `wide` demo model (TinyLlama-1.1B widths, vocab 32000, 2 layers) at f32, q8 and q4, and
//      its language model as GGUF (scripts/peers/to_gguf.py: q8 → Q8_0 and q4 → Q4_0 byte for byte);
//   2. llama.cpp's CPU build from PyPI's llama-cpp-python source package (build-llama.sh);
//   3. parity: at f32 both compute the same greedy ids (ours on the CPU vs llama.cpp);
//   4. natively: `sphinx bench --device cpu` against `llama-bench -t THREADS`, repetitions
//      interleaved, medians, for each quantization;
//   5. the image encode of the wide model on the CPU: its ms and GFLOP/s against this machine's f32
//      GEMM peak measured in the same run (numpy's OpenBLAS and our matrixmultiply SGEMM);
//   6. in ONE headless Chromium: the bench page's comparison — ours on the CPU, ours on the GPU
//      (SwiftShader here) and wllama on the CPU, repetitions interleaved, medians;
//   then a table of tok/s and ratios, written to out/peers/report.md and report.json.
//
//   node scripts/peers/bench-peers.mjs [--reps 3] [--quants q8,q4] [--threads 2] [--prompt 64]
//        [--tokens 32] [--no-native] [--no-browser] [--no-gpu]
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT, SPHINX, launchBrowser, startServer } from '../../tests/web/lib.js';

const { values: o } = parseArgs({
  options: {
    reps: { type: 'string', default: '3' },
    quants: { type: 'string', default: 'q8,q4' },
    threads: { type: 'string', default: '2' },
    prompt: { type: 'string', default: '64' },
    tokens: { type: 'string', default: '32' },
    'no-native': { type: 'boolean', default: false },
    'no-browser': { type: 'boolean', default: false },
    'no-vulkan': { type: 'boolean', default: false },
    'no-gpu': { type: 'boolean', default: false },
    // the browser's engines (wllama, the yardstick, always runs)
    engines: { type: 'string', default: 'ours-cpu,ours-gpu' },
  },
});
const REPS = Number(o.reps);
const THREADS = Number(o.threads);
const PROMPT = Number(o.prompt);
const TOKENS = Number(o.tokens);
const QUANTS = o.quants.split(',');
const OUT = path.join(ROOT, 'out/peers');
const LLAMA = path.join(OUT, 'llama.cpp-build/bin');
const PY = path.join(OUT, 'venv/bin/python');
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const log = (...a) => console.error('bench-peers:', ...a);

function run(cmd, args, { env } = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 28, env: { ...process.env, ...env } });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`}):\n${r.stderr}`);
  return r.stdout;
}

/** The wide demo model at `quant` (written once) and its language model as GGUF. */
function model(quant) {
  const dir = path.join(OUT, `wide-${quant}`);
  if (!fs.existsSync(path.join(dir, 'manifest.json'))) {
    log(`writing the wide model at ${quant}`);
    fs.rmSync(dir, { recursive: true, force: true }); // an interrupted earlier write
    run(SPHINX, ['demo-model', '--size', 'wide', '--quant', quant, '--out', dir]);
  }
  const gguf = path.join(OUT, `wide-${quant}.gguf`);
  if (!fs.existsSync(gguf) || fs.statSync(gguf).mtimeMs < fs.statSync(path.join(dir, 'manifest.json')).mtimeMs) {
    log(`writing ${path.basename(gguf)}`);
    run(PY, [path.join(ROOT, 'scripts/peers/to_gguf.py'), dir, gguf]);
  }
  return { dir, gguf };
}

function setup() {
  if (!fs.existsSync(PY)) {
    log('making the Python venv (gguf, numpy)');
    run('python3', ['-m', 'venv', path.join(OUT, 'venv')]);
  }
  run(PY, ['-m', 'pip', 'install', '-q', 'gguf==0.19.0', 'numpy==2.4.6']);
  run(path.join(ROOT, 'scripts/peers/build-llama.sh'), o['no-vulkan'] ? [] : ['vulkan']);
}

const benchPrompt = (n) => Array.from({ length: n }, (_, i) => (i === 0 ? 1 : 100 + i));

/** One `sphinx bench` of the model folder on the CPU (JSON report); `extra` adds flags. */
function ours(dir, { tokens = TOKENS, reps = 1, extra = [], device = 'cpu' } = {}) {
  const args = ['bench', '--model', dir, '--device', device, '--tokens', String(tokens), '--prompt-tokens', String(PROMPT), '--reps', String(reps), '--json', ...extra];
  return JSON.parse(run(SPHINX, args, { env: { RAYON_NUM_THREADS: String(THREADS) } }));
}

/** Greedy ids of llama.cpp for the bench prompt. */
function llamaIds(gguf) {
  return run(path.join(LLAMA, 'greedy'), [gguf, benchPrompt(PROMPT).join(','), String(TOKENS), String(THREADS)]).trim().split(',').map(Number);
}

/** At f32 (and, for the record, q8/q4): ours' greedy ids against llama.cpp's. */
function parity() {
  const rows = [];
  for (const q of ['f32', ...QUANTS]) {
    const { dir, gguf } = model(q);
    const a = ours(dir).ids;
    const b = llamaIds(gguf);
    const same = a.filter((id, i) => id === b[i]).length;
    rows.push({ quant: q, same, of: a.length, oursIds: a, llamaIds: b });
    log(`parity ${q}: ${same}/${a.length} greedy ids equal`);
  }
  if (rows[0].same !== rows[0].of) throw new Error(`at f32 the greedy ids differ: ${JSON.stringify(rows[0])}`);
  return rows;
}

/** Interleaved repetitions of ours and llama-bench for each quantization. */
function native() {
  const rows = [];
  for (const q of QUANTS) {
    const { dir, gguf } = model(q);
    const runs = { ours: [], llama: [] };
    for (let r = 0; r < REPS; r++) {
      const a = ours(dir);
      runs.ours.push({ prefill: a.prefillTokensPerSecond, decode: a.decode.tokensPerSecond });
      const lb = JSON.parse(run(path.join(LLAMA, 'llama-bench'), ['-m', gguf, '-t', String(THREADS), '-p', String(PROMPT), '-n', String(TOKENS), '-r', '1', '-o', 'json']));
      runs.llama.push({ prefill: lb.find((x) => x.n_prompt > 0).avg_ts, decode: lb.find((x) => x.n_gen > 0).avg_ts });
      log(`native ${q} round ${r + 1}: ours ${JSON.stringify(runs.ours.at(-1))}, llama.cpp ${JSON.stringify(runs.llama.at(-1))}`);
    }
    const m = (who, k) => median(runs[who].map((x) => x[k]));
    // each round's two runs ran back to back, so their ratio sheds the drift a shared machine
    // has over minutes; its median is the second estimate of the ratio
    const paired = (k) => median(runs.ours.map((a, i) => a[k] / runs.llama[i][k]));
    rows.push({ quant: q, ours: { prefill: m('ours', 'prefill'), decode: m('ours', 'decode') }, llama: { prefill: m('llama', 'prefill'), decode: m('llama', 'decode') }, paired: { prefill: paired('prefill'), decode: paired('decode') }, runs });
  }
  return rows;
}

/**
 * On lavapipe (Mesa's Vulkan on the CPU, the one Vulkan device here): ours `sphinx bench --device
 * gpu` (wgpu, tuned kernels from the cache) against `llama-bench -ngl 99` of llama.cpp's Vulkan
 * build on the same GGUF weights, repetitions interleaved; with our run's roofline (read/copy
 * bandwidth, best f32 GEMM of the device), so each phase is also a share of the device's limits.
 */
function vulkan() {
  const rows = [];
  const bench = path.join(OUT, 'llama.cpp-vulkan-build/bin/llama-bench');
  for (const q of QUANTS) {
    const { dir, gguf } = model(q);
    const runs = { ours: [], llama: [] };
    let roofline = null;
    for (let r = 0; r < REPS; r++) {
      const a = ours(dir, { device: 'gpu', extra: r === 0 ? ['--roofline'] : [] });
      roofline ??= a.roofline ? { ...a.roofline, efficiency: a.efficiency } : null;
      runs.ours.push({ prefill: a.prefillTokensPerSecond, decode: a.decode.tokensPerSecond });
      const lb = JSON.parse(run(bench, ['-m', gguf, '-ngl', '99', '-p', String(PROMPT), '-n', String(TOKENS), '-r', '1', '-o', 'json'], { env: { GGML_VK_VISIBLE_DEVICES: '0' } }));
      runs.llama.push({ prefill: lb.find((x) => x.n_prompt > 0).avg_ts, decode: lb.find((x) => x.n_gen > 0).avg_ts });
      log(`lavapipe ${q} round ${r + 1}: ours ${JSON.stringify(runs.ours.at(-1))}, llama.cpp Vulkan ${JSON.stringify(runs.llama.at(-1))}`);
    }
    const m = (who, k) => median(runs[who].map((x) => x[k]));
    rows.push({ quant: q, ours: { prefill: m('ours', 'prefill'), decode: m('ours', 'decode') }, llama: { prefill: m('llama', 'prefill'), decode: m('llama', 'decode') }, roofline, runs });
  }
  return rows;
}

/** The wide q8 model's image encode on the CPU against the f32 GEMM peaks of this run. */
function encode() {
  const dir = model(QUANTS.includes('q8') ? 'q8' : QUANTS[0]).dir;
  const r = ours(dir, { tokens: 1, reps: REPS, extra: ['--image', path.join(ROOT, 'www/assets/demo.png')] });
  const enc = r.phases.find((p) => p.name === 'encode');
  const kernels = JSON.parse(run(SPHINX, ['bench', '--device', 'cpu', '--reps', '5', '--json'], { env: { RAYON_NUM_THREADS: String(THREADS) } })).kernels;
  const ourPeak = kernels.find((k) => k.name.includes('(peak)')).gflops;
  const numpyPeak = Number(run(PY, ['-c', NUMPY_PEAK], { env: { OPENBLAS_NUM_THREADS: String(THREADS), OMP_NUM_THREADS: String(THREADS) } }).trim());
  const gflops = r.encodeGflop / (enc.ms / 1e3);
  const peak = Math.max(ourPeak, numpyPeak);
  return { ms: enc.ms, gflop: r.encodeGflop, gflops, peaks: { matrixmultiply: ourPeak, numpyOpenBLAS: numpyPeak }, ofPeak: gflops / peak };
}

const NUMPY_PEAK = `
import numpy as np, time
n = 2048
a = np.random.rand(n, n).astype(np.float32); b = np.random.rand(n, n).astype(np.float32)
a @ b
best = min((lambda t0: (a @ b, time.perf_counter() - t0)[1])(time.perf_counter()) for _ in range(5))
print(2 * n ** 3 / best / 1e9)
`;

/** The bench page's comparison for each quantization, in one headless Chromium. */
async function browser() {
  const site = path.join(OUT, 'site');
  fs.rmSync(site, { recursive: true, force: true });
  fs.cpSync(path.join(ROOT, 'www'), site, { recursive: true });
  fs.cpSync(path.join(ROOT, 'pkg'), path.join(site, 'pkg'), { recursive: true });
  fs.cpSync(path.join(ROOT, 'node_modules/@wllama/wllama/esm'), path.join(site, 'vendor/wllama'), { recursive: true });
  for (const q of QUANTS) {
    const { dir, gguf } = model(q);
    fs.cpSync(dir, path.join(site, `models/wide-${q}`), { recursive: true });
    fs.copyFileSync(gguf, path.join(site, `models/wide-${q}.gguf`));
  }
  const server = await startServer(site);
  const b = await launchBrowser();
  const rows = [];
  let chromium = 'Chromium';
  try {
    for (const q of QUANTS) {
      const page = await b.page(`${server.url}bench.html?model=models/wide-${q}/manifest.json`);
      await page.waitForSelector('body[data-ready="true"]');
      chromium = (await page.evaluate(() => navigator.userAgent)).match(/(?:Headless)?Chrome\/[\d.]+/)?.[0] ?? chromium;
      await page.fill('#gguf', `models/wide-${q}.gguf`);
      const ours = o.engines.split(',').filter((e) => !(o['no-gpu'] && e === 'ours-gpu'));
      await page.fill('#engines', [...ours, 'wllama'].join(','));
      await page.fill('#threads', String(THREADS));
      await page.fill('#prompt-tokens', String(PROMPT));
      await page.fill('#tokens', String(TOKENS));
      await page.fill('#reps', String(REPS));
      await page.click('#compare');
      await page.waitForFunction(() => document.body.dataset.peers || /^Failed/.test(document.getElementById('peers-status').textContent), null, { timeout: 0 });
      const status = await page.textContent('#peers-status');
      if (status.startsWith('Failed')) throw new Error(`browser ${q}: ${status}`);
      const r = JSON.parse(await page.evaluate(() => document.body.dataset.peers));
      log(`browser ${q}: ${r.rows.map((x) => `${x.engine} ${x.prefill.toFixed(1)}/${x.decode.toFixed(1)}`).join(', ')}`);
      rows.push({ quant: q, isolated: r.isolated, rows: r.rows.map(({ runs, ...x }) => ({ ...x, runs: runs.map(({ ids, ...t }) => t) })) });
      await page.close();
    }
    return { chromium, rows };
  } finally {
    await b.close();
    server.close();
  }
}

const f = (v) => (v >= 100 ? v.toFixed(0) : v.toFixed(1));
const x = (a, b) => `${(a / b).toFixed(2)}×`;

function table(r) {
  const lines = [`# make bench-peers, ${r.date}`, '', `Machine: ${r.machine}. ${THREADS} threads, prompt ${PROMPT} tokens, ${TOKENS} greedy tokens, medians of ${REPS} interleaved repetitions; the \`wide\` model (TinyLlama-1.1B widths, 2 layers, vocab 32000).`, ''];
  if (r.parity) lines.push(`Parity: at f32 ours (CPU) and llama.cpp give the same ${r.parity[0].of} greedy ids; ${r.parity.slice(1).map((p) => `${p.quant} ${p.same}/${p.of}`).join(', ')} (8-bit activations on both sides, each its own rounding).`, '');
  if (r.native) {
    lines.push('Native (llama.cpp CPU build from llama-cpp-python 0.3.36):', '', '| weights | engine | prefill tok/s | decode tok/s |', '|---|---|---|---|');
    for (const n of r.native) {
      lines.push(`| ${n.quant} | ours, \`sphinx bench --device cpu\` | ${f(n.ours.prefill)} | ${f(n.ours.decode)} |`);
      lines.push(`| ${n.quant} | llama.cpp \`llama-bench\` | ${f(n.llama.prefill)} | ${f(n.llama.decode)} |`);
      lines.push(`| ${n.quant} | **ours ÷ llama.cpp** (of the medians) | **${x(n.ours.prefill, n.llama.prefill)}** | **${x(n.ours.decode, n.llama.decode)}** |`);
      lines.push(`| ${n.quant} | ours ÷ llama.cpp, round by round (median) | ${x(n.paired.prefill, 1)} | ${x(n.paired.decode, 1)} |`);
    }
    lines.push('');
  }
  if (r.vulkan) {
    lines.push('On lavapipe (Vulkan on the CPU): ours `sphinx bench --device gpu` against llama.cpp\'s Vulkan build (`llama-bench -ngl 99`):', '', '| weights | engine | prefill tok/s | decode tok/s |', '|---|---|---|---|');
    for (const n of r.vulkan) {
      lines.push(`| ${n.quant} | ours, wgpu | ${f(n.ours.prefill)} | ${f(n.ours.decode)} |`);
      lines.push(`| ${n.quant} | llama.cpp Vulkan | ${f(n.llama.prefill)} | ${f(n.llama.decode)} |`);
      lines.push(`| ${n.quant} | **ours ÷ llama.cpp** | **${x(n.ours.prefill, n.llama.prefill)}** | **${x(n.ours.decode, n.llama.decode)}** |`);
    }
    for (const n of r.vulkan.filter((n) => n.roofline)) {
      const share = (name) => n.roofline.efficiency?.find((e) => e.phase === name);
      const roof = n.roofline;
      const shaderRead = Math.max(roof.readGbps, roof.textureReadGbps ?? 0);
      const decode = share('decode');
      const ofShader = decode ? `, decode ${(100 * decode.reached / shaderRead).toFixed(1)} % of the best shader read` : '';
      lines.push('', `${n.quant} against lavapipe's limits measured in our first run: read ${roof.readGbps.toFixed(1)} GB/s, texture read ${roof.textureReadGbps?.toFixed(1) ?? '—'} GB/s, copy ${roof.copyGbps.toFixed(1)} GB/s, f32 GEMM ${roof.gemmGflops.toFixed(1)} GFLOP/s; ` + ['prefill', 'decode'].map((p) => (share(p) ? `${p} ${(100 * share(p).share).toFixed(1)} %` : `${p} —`)).join(', ') + ofShader + '.');
    }
    lines.push('');
  }
  if (r.encode) {
    const e = r.encode;
    lines.push(`Image encode of the wide q8 model on the CPU: ${f(e.ms)} ms, ${f(e.gflop)} GFLOP in matrix products and attention → ${f(e.gflops)} GFLOP/s = ${(100 * e.ofPeak).toFixed(0)} % of this machine's f32 GEMM peak measured in the same run (numpy/OpenBLAS ${f(e.peaks.numpyOpenBLAS)}, matrixmultiply ${f(e.peaks.matrixmultiply)} GFLOP/s).`, '');
  }
  if (r.browser) {
    lines.push(`Browser (${r.browser.chromium}, headless, cross-origin isolated; the GPU is SwiftShader here), wllama 3.13.0:`, '', '| weights | engine (what it ran on) | prefill tok/s | decode tok/s | ÷ wllama prefill | ÷ wllama decode |', '|---|---|---|---|---|---|');
    for (const q of r.browser.rows) {
      const base = q.rows.find((e) => e.engine === 'wllama');
      for (const e of q.rows) lines.push(`| ${q.quant} | ${e.engine} (${e.ranOn}) | ${f(e.prefill)} | ${f(e.decode)} | ${x(e.prefill, base.prefill)} | ${x(e.decode, base.decode)} |`);
    }
    lines.push('');
  }
  return lines.join('\n');
}

const machine = `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB`;
const report = { date: new Date().toISOString().slice(0, 10), machine };
setup();
report.parity = parity();
if (!o['no-native']) {
  report.native = native();
  report.encode = encode();
}
if (!o['no-vulkan']) report.vulkan = vulkan();
if (!o['no-browser']) report.browser = await browser();
fs.writeFileSync(path.join(OUT, 'report.json'), JSON.stringify(report, null, 2));
const md = table(report);
fs.writeFileSync(path.join(OUT, 'report.md'), md);
console.log(md);
