// An OpenAI-shaped chat call over a loaded SPHINX model, so code written for WebLLM or an
// OpenAI-compatible server ports: `model.openai.chat.completions.create(request)`. It maps
// OpenAI's chat request onto `model.chat` (the same tokens for the same greedy request) and answers
// in OpenAI's shapes: a `chat.completion` with `usage`, or with `stream: true` an async iterable of
// `chat.completion.chunk`s. Errors are `OpenAIError`s shaped like the OpenAI SDK's `APIError`.
//
// SPHINX reads one image per conversation. Images are `image_url` parts whose URL is `data:`,
// `blob:` or of this page's origin; they are decoded here and encoded on the GPU by the model's
// worker — no image byte leaves the page.

/** An error in OpenAI's shape: `status`, and `error` = {message, type, param, code}. */
export class OpenAIError extends Error {
  constructor(status, message, { type = 'invalid_request_error', param = null, code = null } = {}) {
    super(message);
    this.name = status === 400 ? 'BadRequestError' : 'InternalServerError';
    this.status = status;
    this.type = type;
    this.param = param;
    this.code = code;
    this.error = { message, type, param, code };
  }
}

const invalid = (message, param, code = null) => new OpenAIError(400, message, { param, code });

/** Request fields that would change the answer's meaning and that SPHINX cannot honour. */
const UNSUPPORTED = ['tools', 'functions', 'tool_choice', 'function_call', 'logit_bias', 'audio', 'prediction'];

function numberIn(request, name, lo, hi, { integer = false } = {}) {
  const v = request[name];
  if (v == null) return undefined;
  const ok = typeof v === 'number' && Number.isFinite(v) && v >= lo && v <= hi && (!integer || Number.isSafeInteger(v));
  if (!ok) throw invalid(`${name} must be ${integer ? 'an integer' : 'a number'} in [${lo}, ${hi}], got ${JSON.stringify(v)}`, name);
  return v;
}

/** A message's content as text plus its image URLs (user messages only may carry images). */
function partsOf(m, i) {
  const where = `messages[${i}].content`;
  if (typeof m.content === 'string') return { text: m.content, images: [] };
  if (!Array.isArray(m.content)) throw invalid(`${where} must be a string or an array of content parts`, where);
  const texts = [];
  const images = [];
  m.content.forEach((p, k) => {
    if (p?.type === 'text' && typeof p.text === 'string') texts.push(p.text);
    else if (p?.type === 'image_url' && m.role === 'user' && typeof (p.image_url?.url ?? p.image_url) === 'string') images.push(p.image_url?.url ?? p.image_url);
    else throw invalid(`${where}[${k}]: expected {type: 'text', text}${m.role === 'user' ? " or {type: 'image_url', image_url: {url}}" : ''}`, `${where}[${k}]`);
  });
  return { text: texts.join('\n'), images };
}

/** OpenAI messages → SPHINX's {system, messages, imageUrl}. */
export function toSphinxChat(messages) {
  if (!Array.isArray(messages) || messages.length === 0) throw invalid('messages must be a non-empty array', 'messages');
  let system;
  const out = [];
  const images = new Set();
  messages.forEach((m, i) => {
    const role = m?.role === 'developer' ? 'system' : m?.role;
    if (!['system', 'user', 'assistant'].includes(role)) throw invalid(`messages[${i}].role must be system, user or assistant`, `messages[${i}].role`);
    const { text, images: urls } = partsOf(m, i);
    urls.forEach((u) => images.add(u));
    if (role === 'system') {
      if (out.length > 0 || system !== undefined) throw invalid('a system message may only come first', `messages[${i}]`);
      system = text;
    } else {
      out.push({ role, content: text });
    }
  });
  if (images.size > 1) throw invalid('SPHINX reads one image per conversation; this request has several', 'messages');
  const last = out.at(-1);
  if (!last || last.role !== 'user') throw invalid('the last message must be the user\'s', 'messages');
  out.forEach((m, i) => {
    if (m.role !== (i % 2 ? 'assistant' : 'user')) throw invalid('after the system message, roles must alternate user / assistant, starting with the user', 'messages');
  });
  return { system, messages: out, imageUrl: images.values().next().value };
}

/** The sampling options of an OpenAI request as model.chat's. Defaults are SPHINX's (temperature
 *  0.1, top_p 0.5, 512 tokens), not OpenAI's. */
export function toSphinxOptions(request) {
  for (const k of UNSUPPORTED) if (request[k] != null) throw invalid(`${k} is not supported by SPHINX`, k, 'unsupported_parameter');
  if (request.n != null && request.n !== 1) throw invalid('n must be 1', 'n', 'unsupported_value');
  if (request.logprobs) throw invalid('logprobs are not supported', 'logprobs', 'unsupported_value');
  const format = request.response_format?.type;
  if (format != null && format !== 'text') throw invalid(`response_format ${format} is not supported`, 'response_format', 'unsupported_value');
  const maxTokens = numberIn(request, 'max_completion_tokens', 1, 1 << 20, { integer: true }) ?? numberIn(request, 'max_tokens', 1, 1 << 20, { integer: true });
  const stop = request.stop == null ? [] : Array.isArray(request.stop) ? request.stop : [request.stop];
  if (stop.length > 4 || !stop.every((s) => typeof s === 'string' && s.length > 0)) throw invalid('stop must be a non-empty string or up to 4 of them', 'stop');
  return {
    maxTokens: maxTokens ?? 512,
    temperature: numberIn(request, 'temperature', 0, 2) ?? 0.1,
    topP: request.top_p === 0 ? Number.MIN_VALUE : numberIn(request, 'top_p', 0, 1) ?? 0.5,
    seed: numberIn(request, 'seed', 0, Number.MAX_SAFE_INTEGER, { integer: true }) ?? 0,
    stop,
  };
}

/** Pixels of an image URL (data:, blob: or same-origin), decoded on this thread. */
// The engine's image limits (crate/src/image/mod.rs MAX_IMAGE_SIDE / MAX_IMAGE_PIXELS, kept equal by
// a test there), checked before a canvas of the decoded size is allocated.
const MAX_IMAGE_SIDE = 16384;
const MAX_IMAGE_PIXELS = 67108864;

export async function pixelsOfUrl(url, signal) {
  let blob;
  if (url.startsWith('data:')) {
    const m = /^data:([^;,]*)(;base64)?,(.*)$/s.exec(url);
    if (!m) throw invalid('image_url: not a valid data: URL', 'image_url');
    const body = m[2] ? Uint8Array.from(atob(m[3]), (c) => c.charCodeAt(0)) : new TextEncoder().encode(decodeURIComponent(m[3]));
    blob = new Blob([body], { type: m[1] || 'application/octet-stream' });
  } else {
    const u = new URL(url, globalThis.location?.href);
    if (u.protocol !== 'blob:' && u.origin !== globalThis.location?.origin) {
      throw invalid('image_url must be a data: or blob: URL or one of this page\'s origin (images are not fetched from elsewhere)', 'image_url');
    }
    const resp = await fetch(u, { signal });
    if (!resp.ok) throw invalid(`image_url: HTTP ${resp.status} from ${u.href}`, 'image_url');
    blob = await resp.blob();
  }
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  } catch (e) {
    throw invalid(`image_url: the image could not be decoded (${e.message})`, 'image_url', 'invalid_image_format');
  }
  const { width, height } = bitmap;
  if (width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE || width * height > MAX_IMAGE_PIXELS) {
    bitmap.close();
    throw invalid(`image_url: image too large (${width}×${height}); the limit is ${MAX_IMAGE_SIDE} pixels per side and ${MAX_IMAGE_PIXELS} pixels in all`, 'image_url', 'invalid_image_format');
  }
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true, colorSpace: 'srgb' });
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  return ctx.getImageData(0, 0, canvas.width, canvas.height);
}

const completionId = () => `chatcmpl-${crypto.getRandomValues(new Uint32Array(3)).reduce((s, v) => s + v.toString(36), '')}`;

/** The `openai` namespace of a model: `{chat: {completions: {create}}}`. */
export function openaiApi(model) {
  let cached = null; // {url, image}: the last conversation's image, kept encoded
  async function imageFor(url, signal) {
    if (!url) return undefined;
    if (cached?.url === url) return cached.image;
    const image = await model.encodeImage(await pixelsOfUrl(url, signal), { signal });
    const old = cached;
    cached = { url, image };
    old?.image.dispose().catch(() => {});
    return image;
  }

  async function* run(request, { signal } = {}) {
    const chat = toSphinxChat(request.messages);
    const options = toSphinxOptions(request);
    const image = await imageFor(chat.imageUrl, signal);
    const it = model.chat({ system: chat.system, messages: chat.messages, image, ...options, signal });
    try {
      for (;;) {
        const { value, done } = await it.next();
        if (done) {
          const { promptTokens, tokens } = value;
          return { finish: value.finish, usage: { prompt_tokens: promptTokens, completion_tokens: tokens, total_tokens: promptTokens + tokens } };
        }
        if (value.text) yield { text: value.text };
      }
    } catch (e) {
      if (e?.name === 'AbortError' || e instanceof OpenAIError) throw e;
      throw new OpenAIError(500, e?.message ?? String(e), { type: 'server_error' });
    }
  }

  async function complete(request, options) {
    const id = completionId();
    const created = Math.floor(Date.now() / 1000);
    const name = request.model ?? model.info.model.release;
    const it = run(request, options);
    let content = '';
    for (;;) {
      const { value, done } = await it.next();
      if (done) {
        return {
          id,
          object: 'chat.completion',
          created,
          model: name,
          choices: [{ index: 0, message: { role: 'assistant', content, refusal: null }, finish_reason: value.finish, logprobs: null }],
          usage: value.usage,
        };
      }
      content += value.text;
    }
  }

  function stream(request, options) {
    const id = completionId();
    const created = Math.floor(Date.now() / 1000);
    const name = request.model ?? model.info.model.release;
    const includeUsage = !!request.stream_options?.include_usage;
    const controller = new AbortController();
    const signal = options?.signal ? AbortSignal.any([options.signal, controller.signal]) : controller.signal;
    const chunk = (delta, finish, usage) => ({ id, object: 'chat.completion.chunk', created, model: name, choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }], ...(usage !== undefined ? { usage } : {}) });
    async function* chunks() {
      const it = run(request, { signal });
      yield chunk({ role: 'assistant', content: '' }, null, includeUsage ? null : undefined);
      for (;;) {
        const { value, done } = await it.next();
        if (done) {
          yield chunk({}, value.finish, includeUsage ? null : undefined);
          if (includeUsage) yield { id, object: 'chat.completion.chunk', created, model: name, choices: [], usage: value.usage };
          return;
        }
        yield chunk({ content: value.text }, null, includeUsage ? null : undefined);
      }
    }
    const gen = chunks();
    return { controller, [Symbol.asyncIterator]: () => gen };
  }

  return {
    chat: {
      completions: {
        /** OpenAI's `chat.completions.create`: `request` as OpenAI's; `options.signal` aborts. */
        async create(request, options = {}) {
          if (!request || typeof request !== 'object') throw invalid('the request must be an object', null);
          if (request.stream) {
            toSphinxChat(request.messages);
            toSphinxOptions(request);
            return stream(request, options);
          }
          return complete(request, options);
        },
      },
    },
  };
}
