// An OpenAI-shaped chat call over a loaded SPHINX model, so code written for WebLLM or an
// OpenAI-compatible server ports: `model.openai.chat.completions.create(request)`. It maps
// OpenAI's chat request onto `model.chat` (the same tokens for the same greedy request) and answers
// in OpenAI's shapes: a `chat.completion` with `usage`, or with `stream: true` an async iterable of
// `chat.completion.chunk`s. Errors are `OpenAIError`s shaped like the OpenAI SDK's `APIError`.
//
// SPHINX reads one image per conversation. Images are `image_url` parts whose URL is `data:`,
// `blob:` or of this page's origin; they are decoded here (a data: URL's length is checked before
// it is decoded) and encoded on the GPU by the model's worker — no image byte leaves the page.
//
// Statuses as OpenAI gives them: 400 for what the request asks wrongly (a prompt past the context
// is `context_length_exceeded`), 404 `model_not_found` once the model is disposed, 500 only for a
// failure of the engine itself — code that retries on 5xx retries only what may succeed again.

import { decodeImage, pixelsOf } from './pixels.js';

/** The SDK's class names of the statuses given here. */
const NAMES = { 400: 'BadRequestError', 404: 'NotFoundError' };

/** An error in OpenAI's shape: `status`, and `error` = {message, type, param, code}. */
export class OpenAIError extends Error {
  constructor(status, message, { type = 'invalid_request_error', param = null, code = null } = {}) {
    super(message);
    this.name = NAMES[status] ?? 'InternalServerError';
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
 *  0.1, top_p 0.5, 512 tokens), not OpenAI's. `limits`: the engine's (`model.info.model.limits`). */
export function toSphinxOptions(request, limits) {
  for (const k of UNSUPPORTED) if (request[k] != null) throw invalid(`${k} is not supported by SPHINX`, k, 'unsupported_parameter');
  if (request.n != null && request.n !== 1) throw invalid('n must be 1', 'n', 'unsupported_value');
  if (request.logprobs) throw invalid('logprobs are not supported', 'logprobs', 'unsupported_value');
  const format = request.response_format?.type;
  if (format != null && format !== 'text') throw invalid(`response_format ${format} is not supported`, 'response_format', 'unsupported_value');
  const most = limits.maxTokens;
  const maxTokens = numberIn(request, 'max_completion_tokens', 1, most, { integer: true }) ?? numberIn(request, 'max_tokens', 1, most, { integer: true });
  const stop = request.stop == null ? [] : Array.isArray(request.stop) ? request.stop : [request.stop];
  // how many and how long: the engine's rule (crate/src/text/stop.rs), answered as a 400 below
  if (!stop.every((s) => typeof s === 'string')) throw invalid('stop must be a string or an array of strings', 'stop');
  return {
    maxTokens: maxTokens ?? 512,
    temperature: numberIn(request, 'temperature', 0, 2) ?? 0.1,
    topP: request.top_p === 0 ? Number.MIN_VALUE : numberIn(request, 'top_p', 0, 1) ?? 0.5,
    seed: numberIn(request, 'seed', 0, Number.MAX_SAFE_INTEGER, { integer: true }) ?? 0,
    stop,
  };
}

// The engine's image limits (`model.info.model.limits`: maxImageSide, maxImagePixels,
// maxImageFileBytes, from crate/src/image) are checked before a canvas of the decoded size is
// allocated, and before a data: URL or a fetched image is decoded.

/** The longest data: URL read: base64 of the largest image file, and room for its header. */
const maxDataUrlChars = (limits) => 4 * Math.ceil(limits.maxImageFileBytes / 3) + 256;
/** Base64 characters decoded per step (a multiple of 4). */
const BASE64_STEP = 1 << 20;

const tooLarge = (what, limits) => invalid(`image_url: ${what}; the limit is ${limits.maxImageFileBytes} bytes of image file (${maxDataUrlChars(limits)} characters of data: URL)`, 'image_url');

/** The bytes of base64 `text` as Blob parts, decoded a step at a time (no string of the whole). */
function base64Parts(text) {
  const clean = /[\t\n\f\r ]/.test(text) ? text.replace(/[\t\n\f\r ]+/g, '') : text;
  const parts = [];
  try {
    for (let at = 0; at < clean.length; at += BASE64_STEP) {
      const bin = atob(clean.slice(at, at + BASE64_STEP));
      const bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      parts.push(bytes);
    }
  } catch (e) {
    throw invalid(`image_url: the data: URL is not valid base64 (${e.message})`, 'image_url');
  }
  return parts;
}

/** The bytes of a percent-encoded data: URL body as Blob parts (%XX is one byte; other text UTF-8). */
function percentParts(text) {
  return (text.match(/%[0-9a-fA-F]{2}|[^%]+|%/g) ?? []).map((t) => (t.length === 3 && t[0] === '%' ? new Uint8Array([parseInt(t.slice(1), 16)]) : t));
}

/** A data: URL as a Blob: its length checked before anything is decoded. */
function blobOfDataUrl(url, limits) {
  if (url.length > maxDataUrlChars(limits)) throw tooLarge(`the data: URL is ${url.length} characters`, limits);
  const comma = url.indexOf(',');
  if (comma < 0) throw invalid('image_url: not a valid data: URL (no comma)', 'image_url');
  const header = url.slice(5, comma);
  const body = url.slice(comma + 1);
  const parts = /;base64$/i.test(header) ? base64Parts(body) : percentParts(body);
  return new Blob(parts, { type: header.split(';')[0] || 'application/octet-stream' });
}

/** Pixels of an image URL (data:, blob: or same-origin), decoded on this thread within `limits`. */
async function pixelsOfUrl(url, signal, limits) {
  let blob;
  if (url.startsWith('data:')) {
    blob = blobOfDataUrl(url, limits);
  } else {
    const u = new URL(url, globalThis.location?.href);
    if (u.protocol !== 'blob:' && u.origin !== globalThis.location?.origin) {
      throw invalid('image_url must be a data: or blob: URL or one of this page\'s origin (images are not fetched from elsewhere)', 'image_url');
    }
    const resp = await fetch(u, { signal });
    if (!resp.ok) throw invalid(`image_url: HTTP ${resp.status} from ${u.href}`, 'image_url');
    const length = Number(resp.headers.get('Content-Length') ?? 0);
    if (length > limits.maxImageFileBytes) {
      resp.body?.cancel().catch(() => {});
      throw tooLarge(`${u.href} is ${length} bytes`, limits);
    }
    blob = await resp.blob();
  }
  if (blob.size > limits.maxImageFileBytes) throw tooLarge(`the image is ${blob.size} bytes`, limits);
  let bitmap;
  try {
    bitmap = await decodeImage(blob);
  } catch (e) {
    throw invalid(`image_url: the image could not be decoded (${e.message})`, 'image_url', 'invalid_image_format');
  }
  const { width, height } = bitmap;
  const { maxImageSide: side, maxImagePixels: most } = limits;
  if (width > side || height > side || width * height > most) {
    bitmap.close();
    throw invalid(`image_url: image too large (${width}×${height}); the limit is ${side} pixels per side and ${most} pixels in all`, 'image_url', 'invalid_image_format');
  }
  const pixels = pixelsOf(bitmap);
  bitmap.close();
  return pixels;
}

/** An error of model.chat (or of encoding the image) in OpenAI's shape (see the file's head). */
function asOpenAIError(e, model, request) {
  if (e?.name === 'AbortError' || e instanceof OpenAIError) return e;
  const message = e?.message ?? String(e);
  const context = /prompt of (\d+) tokens \+ (\d+) image positions does not fit max_seq_len (\d+)/.exec(message);
  if (context) {
    const [text, image, max] = context.slice(1).map(Number);
    const parts = image ? ` (${text} of text and ${image} of the image)` : '';
    const words = `This model's maximum context length is ${max} tokens. However, your messages resulted in ${text + image} tokens${parts}. Please reduce the length of the messages.`;
    return new OpenAIError(400, words, { param: 'messages', code: 'context_length_exceeded' });
  }
  if (/stop must be a non-empty string/.test(message)) return new OpenAIError(400, message, { param: 'stop' });
  if (model.disposed) {
    const name = request.model ?? model.info.model.release;
    return new OpenAIError(404, `The model \`${name}\` does not exist: it was disposed (model.dispose()). Load it again with loadSphinx; its weights stay stored.`, { param: 'model', code: 'model_not_found' });
  }
  if (e instanceof TypeError) return new OpenAIError(400, message, { param: null });
  return new OpenAIError(500, message, { type: 'server_error' });
}

const completionId = () => `chatcmpl-${crypto.getRandomValues(new Uint32Array(3)).reduce((s, v) => s + v.toString(36), '')}`;

/** The last conversation's image, kept encoded: a follow-up question about it is not encoded again. */
class ImageCache {
  #model;
  #cached = null; // {url, image}
  constructor(model) {
    this.#model = model;
  }
  async imageFor(url, signal) {
    if (!url) return undefined;
    if (this.#cached?.url === url) return this.#cached.image;
    const image = await this.#model.encodeImage(await pixelsOfUrl(url, signal, this.#model.info.model.limits), { signal });
    const old = this.#cached;
    this.#cached = { url, image };
    old?.image.dispose().catch(() => {});
    return image;
  }
}

/** model.chat for an OpenAI request: yields {text}, returns {finish, usage}; errors in OpenAI's shape. */
async function* answer(model, images, request, { signal } = {}) {
  const chat = toSphinxChat(request.messages);
  const options = toSphinxOptions(request, model.info.model.limits);
  try {
    const image = await images.imageFor(chat.imageUrl, signal);
    const it = model.chat({ system: chat.system, messages: chat.messages, image, ...options, signal });
    for (;;) {
      const { value, done } = await it.next();
      if (done) {
        // The prompt as the model reads it: the text's tokens and the image's positions.
        const promptTokens = value.promptTokens + (image ? model.info.model.imageWords : 0);
        const usage = { prompt_tokens: promptTokens, completion_tokens: value.tokens, total_tokens: promptTokens + value.tokens };
        return { finish: value.finish, usage };
      }
      if (value.text) yield { text: value.text };
    }
  } catch (e) {
    throw asOpenAIError(e, model, request);
  }
}

/** A `chat.completion` of the whole answer `it` (an `answer` run) for model `name`. */
async function complete(it, name) {
  const id = completionId();
  const created = Math.floor(Date.now() / 1000);
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

/** The `chat.completion.chunk`s of `start(signal)` (an `answer` run), as an async iterable with
 *  the `controller` that aborts it. */
function stream(start, name, request, options) {
  const id = completionId();
  const created = Math.floor(Date.now() / 1000);
  const includeUsage = !!request.stream_options?.include_usage;
  const controller = new AbortController();
  const signal = options?.signal ? AbortSignal.any([options.signal, controller.signal]) : controller.signal;
  const chunk = (delta, finish, usage) => ({ id, object: 'chat.completion.chunk', created, model: name, choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }], ...(usage !== undefined ? { usage } : {}) });
  async function* chunks() {
    const it = start(signal);
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

/** The `openai` namespace of a model: `{chat: {completions: {create}}}`. */
export function openaiApi(model) {
  const images = new ImageCache(model);
  return {
    chat: {
      completions: {
        /** OpenAI's `chat.completions.create`: `request` as OpenAI's; `options.signal` aborts. */
        async create(request, options = {}) {
          if (!request || typeof request !== 'object') throw invalid('the request must be an object', null);
          const name = request.model ?? model.info.model.release;
          if (request.stream) {
            toSphinxChat(request.messages);
            toSphinxOptions(request, model.info.model.limits);
            return stream((signal) => answer(model, images, request, { signal }), name, request, options);
          }
          return complete(answer(model, images, request, options), name);
        },
      },
    },
  };
}
