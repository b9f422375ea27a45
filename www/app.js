// The demo page: loads a converted SPHINX model with the sphinx-web package (?model=URL picks the
// manifest), takes an image (drop, paste, file, camera), draws it on a canvas, and streams answers,
// drawing the boxes and points an answer names over the image. Pixels go to the model's worker
// only; no request ever carries them.

// out/site/ (make demo) has the package beside the page; a checkout served whole has it one level up.
const { loadSphinx, clearCache } = await import('./pkg/index.js').catch(() => import('../pkg/index.js'));

const DEFAULT_MODEL = 'models/demo/manifest.json';
const $ = (id) => document.getElementById(id);

const params = new URLSearchParams(location.search);
const modelUrl = new URL(params.get('model') || DEFAULT_MODEL, location.href).href;
const isDemoModel = !params.get('model');

let model = null;
let image = null; // the encoded image (SphinxImage) of what the canvas shows
let encoding = null; // a pending encodeImage promise
let history = []; // [{role, content}] of this chat
let busy = null; // AbortController of the running answer

function formatBytes(n) {
  const units = ['B', 'KB', 'MB', 'GB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) (n /= 1000), i++;
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function formatSeconds(s) {
  if (!isFinite(s)) return '…';
  if (s < 60) return `${Math.ceil(s)} s`;
  return `${Math.floor(s / 60)} min ${Math.ceil(s % 60)} s`;
}

// ---- loading ---------------------------------------------------------------------------------

const PHASES = { download: 'Downloading', verify: 'Checking stored bytes of', upload: 'Uploading weights to the GPU', compile: 'Compiling GPU kernels' };

function showProgress(e) {
  const bar = $('load-bar');
  bar.max = e.total || 1;
  bar.value = e.loaded;
  let text = PHASES[e.phase] ?? e.phase;
  if (e.phase === 'download' || e.phase === 'verify') {
    if (e.file) text += ` ${e.file}`;
    text += ` — ${formatBytes(e.loaded)} of ${formatBytes(e.total)}`;
    if (e.bytesPerSecond > 0) {
      text += ` · ${formatBytes(e.bytesPerSecond)}/s · ${formatSeconds((e.total - e.loaded) / e.bytesPerSecond)} left`;
    }
  } else if (e.phase === 'upload') {
    text += ` — ${formatBytes(e.loaded)} of ${formatBytes(e.total)}`;
  }
  if (e.note) text = e.note;
  $('load-text').textContent = text;
}

async function load() {
  $('model-url').textContent = modelUrl;
  $('notice').hidden = !isDemoModel;
  try {
    model = await loadSphinx(modelUrl, { onProgress: showProgress });
  } catch (e) {
    $('load-text').innerHTML = '';
    const span = document.createElement('span');
    span.className = 'error-text';
    span.textContent = `Could not load the model: ${e.message}`;
    $('load-text').append(span);
    return;
  }
  const { adapter, model: m, load: l } = model.info;
  $('load-bar').value = $('load-bar').max;
  $('load-text').textContent =
    `Ready: ${m.release} (${formatBytes(l.totalBytes)}; ${l.downloadedBytes ? `${formatBytes(l.downloadedBytes)} downloaded` : 'from the browser cache'}) in ${formatSeconds(l.totalMs / 1000)}.`;
  $('gpu-info').textContent =
    `GPU: ${adapter.adapter || 'unnamed adapter'} (${adapter.backend}${adapter.software ? ', a software adapter: expect it to be slow' : ''}); shader-f16 ${adapter.shaderF16 ? 'yes' : 'no'}, subgroups ${adapter.subgroups ? 'yes' : 'no'}; ` +
    `maxBufferSize ${formatBytes(adapter.maxBufferSize)}`;
  document.body.dataset.ready = 'true';
  updateButtons();
  if (hasImage()) encodeCanvas();
}

$('clear-cache').addEventListener('click', async () => {
  if (model) {
    await model.dispose();
    model = null;
    image = null;
  }
  const removed = await clearCache(modelUrl);
  $('load-text').textContent = removed ? 'Cache cleared. Reload the page to download the model again.' : 'Nothing was cached.';
  updateButtons();
});

// ---- the image -------------------------------------------------------------------------------

const hasImage = () => $('image').width > 0;

function drawOnCanvas(source, width, height) {
  const canvas = $('image');
  canvas.width = width;
  canvas.height = height;
  canvas.getContext('2d').drawImage(source, 0, 0, width, height);
  const overlay = $('overlay');
  overlay.width = width;
  overlay.height = height;
  $('drop-hint').hidden = true;
  image?.dispose().catch(() => {});
  image = null;
  encodeCanvas();
}

async function takeFile(file) {
  if (!file || !file.type.startsWith('image/')) {
    $('image-status').textContent = 'That is not an image.';
    return;
  }
  try {
    const bitmap = await createImageBitmap(file);
    drawOnCanvas(bitmap, bitmap.width, bitmap.height);
    bitmap.close();
  } catch (e) {
    $('image-status').textContent = `Could not read the image: ${e.message}`;
  }
}

async function encodeCanvas() {
  if (!model || !hasImage()) return;
  const canvas = $('image');
  const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
  $('image-status').textContent = `Encoding the ${pixels.width}×${pixels.height} image…`;
  const pending = model.encodeImage(pixels);
  encoding = pending;
  updateButtons();
  try {
    const encoded = await pending;
    if (encoding !== pending) return encoded.dispose(); // a newer image replaced it meanwhile
    image = encoded;
    $('image-status').textContent = `Image ${pixels.width}×${pixels.height} encoded in ${formatSeconds(encoded.encodeMs / 1000)}.`;
  } catch (e) {
    if (encoding === pending) $('image-status').textContent = `Could not encode the image: ${e.message}`;
  } finally {
    if (encoding === pending) encoding = null;
    updateButtons();
  }
}

const drop = $('drop');
drop.addEventListener('dragover', (e) => {
  e.preventDefault();
  drop.classList.add('over');
});
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  takeFile(e.dataTransfer.files[0]);
});
document.addEventListener('paste', (e) => {
  const item = [...(e.clipboardData?.items ?? [])].find((i) => i.type.startsWith('image/'));
  if (item) takeFile(item.getAsFile());
});
$('file').addEventListener('change', (e) => takeFile(e.target.files[0]));
$('sample').addEventListener('click', async () => {
  const blob = await (await fetch('assets/demo.png')).blob();
  takeFile(new File([blob], 'demo.png', { type: 'image/png' }));
});

let stream = null;
$('camera').addEventListener('click', async () => {
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true });
  } catch (e) {
    $('image-status').textContent = `No camera: ${e.message}`;
    return;
  }
  $('video').srcObject = stream;
  $('camera-box').hidden = false;
});
function closeCamera() {
  stream?.getTracks().forEach((t) => t.stop());
  stream = null;
  $('camera-box').hidden = true;
}
$('snap').addEventListener('click', () => {
  const v = $('video');
  if (v.videoWidth) drawOnCanvas(v, v.videoWidth, v.videoHeight);
  closeCamera();
});
$('camera-close').addEventListener('click', closeCamera);

// ---- chat ------------------------------------------------------------------------------------

function addMessage(role, text) {
  const div = document.createElement('div');
  div.className = `msg ${role}`;
  const who = document.createElement('span');
  who.className = 'who';
  who.textContent = role === 'user' ? 'You' : role === 'assistant' ? 'SPHINX' : 'Error';
  const body = document.createElement('span');
  body.className = 'text';
  body.textContent = text;
  div.append(who, body);
  $('log').append(div);
  $('log').scrollTop = $('log').scrollHeight;
  return body;
}

function updateButtons() {
  $('send').disabled = !model || !!busy || !!encoding;
  $('stop').disabled = !busy;
}

async function drawAnswer(answer) {
  const overlay = $('overlay');
  const ctx = overlay.getContext('2d');
  ctx.clearRect(0, 0, overlay.width, overlay.height);
  if (!image) return;
  const { groundings, skeleton } = await model.parseAnswer(answer, image);
  const colours = ['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#42d4f4'];
  ctx.lineWidth = Math.max(2, overlay.width / 300);
  ctx.font = `${Math.max(12, overlay.width / 40)}px system-ui`;
  groundings.forEach((g, i) => {
    ctx.strokeStyle = ctx.fillStyle = colours[i % colours.length];
    for (const s of g.shapes) {
      if (s.kind === 'box') {
        ctx.strokeRect(s.x1, s.y1, s.x2 - s.x1, s.y2 - s.y1);
        if (g.phrase) ctx.fillText(g.phrase, s.x1 + 3, s.y1 + parseInt(ctx.font));
      } else {
        ctx.beginPath();
        ctx.arc(s.x, s.y, ctx.lineWidth * 2, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
  });
  ctx.strokeStyle = '#ffe119';
  for (const [[x1, y1], [x2, y2]] of skeleton) {
    ctx.beginPath();
    ctx.moveTo(x1, y1);
    ctx.lineTo(x2, y2);
    ctx.stroke();
  }
}

$('ask').addEventListener('submit', async (e) => {
  e.preventDefault();
  const question = $('question').value.trim();
  if (!question || !model || busy) return;
  history.push({ role: 'user', content: question });
  addMessage('user', question);
  const out = addMessage('assistant', '');
  busy = new AbortController();
  updateButtons();
  let answer = '';
  const t0 = performance.now();
  try {
    const chat = model.chat({
      messages: history,
      image: image ?? undefined,
      maxTokens: Number($('max-tokens').value) || 64,
      temperature: Number($('temperature').value) || 0,
      signal: busy.signal,
    });
    let n = 0;
    for await (const { text } of chat) {
      answer += text;
      out.textContent = answer;
      n++;
      $('chat-status').textContent = `${n} tokens, ${(n / ((performance.now() - t0) / 1000)).toFixed(1)} tokens/s`;
    }
    history.push({ role: 'assistant', content: answer });
    document.body.dataset.answered = String(Number(document.body.dataset.answered || 0) + 1);
    await drawAnswer(answer);
  } catch (err) {
    if (err.name === 'AbortError') {
      history.push({ role: 'assistant', content: answer });
      $('chat-status').textContent = 'Stopped.';
    } else {
      history.pop();
      addMessage('error', err.message);
    }
  } finally {
    busy = null;
    updateButtons();
  }
});
$('question').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey) {
    e.preventDefault();
    $('ask').requestSubmit();
  }
});
$('stop').addEventListener('click', () => busy?.abort());
$('new-chat').addEventListener('click', () => {
  busy?.abort();
  history = [];
  $('log').textContent = '';
  const overlay = $('overlay');
  overlay.getContext('2d').clearRect(0, 0, overlay.width, overlay.height);
});

load();
