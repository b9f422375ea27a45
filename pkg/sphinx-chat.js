// <sphinx-chat>: a whole SPHINX image chat in one tag, in its own shadow DOM.
//
//   <script type="module" src=".../sphinx-web/sphinx-chat.js"></script>
//   <sphinx-chat model=".../manifest.json"></sphinx-chat>
//
// Attributes: model (manifest URL), models (a models.json to pick from), demo-model (offered when a
// model fails to load), sample-image (URL of a sample image), task (the task picked at start),
// device (auto, gpu or cpu: loadSphinx's device; auto unless set), temperature, top-p, max-tokens
// (1 to 8192), seed. Events: `loading` (detail: {url}, as a load starts), `ready` (detail: the
// model's info), `answer` (detail: {question, answer, finish, stats, drawing}), `error` (detail:
// {kind, title, help, details}). Methods: ask(question), setImage(blob | url), renderAnswer(text,
// {question}), selectTask(id); properties: model, image, region, task.
//
// A new image while the chat holds answers asks first (it starts a new chat); Escape stops an
// answer wherever the focus is on the page (but in another chat element).

import { ImagePanel } from './ui/image-panel.js';
import { Loader } from './ui/loader.js';
import { Chat } from './ui/chat.js';
import { TaskPicker } from './ui/tasks-picker.js';
import { drawOverlay, listShapes } from './ui/overlay.js';
import { regionText } from './index.js';
import { TEMPLATE } from './ui/template.js';

const DEFAULTS = { temperature: 0.1, 'top-p': 0.5, 'max-tokens': 256, seed: 0 };
/** The Max tokens field's bound (its max attribute). */
const MAX_TOKENS = 8192;

export class SphinxChat extends HTMLElement {
  static observedAttributes = ['model', 'models'];
  #built = false;
  #encoding = null; // the pending encodeImage promise
  #image = null; // SphinxImage of what the canvas shows
  #drawing = null; // the shown answer's shapes
  #highlight = -1;

  connectedCallback() {
    if (this.#built) return;
    this.#built = true;
    const root = this.attachShadow({ mode: 'open' });
    root.innerHTML = TEMPLATE;
    this.q = (s) => root.querySelector(s);
    this.#parts(root);
    this.#wire();
    this.#settingsFromAttributes();
    this.loader.demoUrl = this.getAttribute('demo-model') && new URL(this.getAttribute('demo-model'), location.href).href;
    this.loader.device = this.getAttribute('device') || 'auto';
    this.q('[data-sample]').hidden = !this.getAttribute('sample-image');
    const start = this.getAttribute('model');
    this.loader.showModels(this.getAttribute('models'), start && new URL(start, location.href).href).then((models) => {
      const url = start || models[0]?.manifest;
      if (url) this.loader.load(url);
      else this.q('[data-load-text]').textContent = 'No model: set the model attribute to a manifest.json URL.';
    });
    if (this.getAttribute('task')) this.picker.select(this.getAttribute('task'));
    this.#changed();
  }

  attributeChangedCallback(name, old, value) {
    if (!this.#built || old === value || name !== 'model' || !value) return;
    this.loader.load(value);
  }

  #parts(root) {
    this.loader = new Loader(root, {
      onLoading: (url) => this.emit('loading', { url }),
      onLoaded: (model) => {
        this.emit('ready', model.info);
        this.#changed();
        if (this.panel.size) this.#encode(this.panel.pixels());
      },
      onUnloaded: () => {
        this.#image = null;
        this.#changed();
      },
      onError: (x) => this.emit('error', x),
      onChange: () => this.#changed(),
    });
    this.panel = new ImagePanel(root, {
      onImage: (pixels) => this.#newImage(pixels),
      onRegion: () => (this.picker.fill(), this.#changed()),
      onStatus: (text) => (this.q('[data-image-status]').textContent = text),
      mayReplace: () => this.#mayReplaceImage(),
    });
    this.picker = new TaskPicker(root, {
      region: () => this.panel.region,
      size: () => this.panel.size,
      onChange: (task) => {
        if (task.fields.some((f) => f.kind === 'region')) this.panel.setTool(true);
        this.#changed();
      },
    });
    this.chat = new Chat(root, {
      model: () => this.loader.model,
      image: () => this.#image,
      size: () => this.panel.size,
      showDrawing: (d) => this.#show(d),
      highlight: (i) => this.#setHighlight(i),
      restoreQuestion: (q) => {
        const box = this.q('[data-question]');
        if (!box.value.trim()) box.value = q;
      },
      changed: () => this.#changed(),
      emit: (name, detail) => this.emit(name, detail),
    });
  }

  #wire() {
    this.q('[data-form]').addEventListener('submit', (e) => {
      e.preventDefault();
      this.ask(this.q('[data-question]').value);
    });
    this.q('[data-question]').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.q('[data-form]').requestSubmit();
      }
    });
    this.q('[data-question]').addEventListener('input', () => this.#changed());
    this.q('[data-stop]').addEventListener('click', () => this.chat.stop());
    this.q('[data-new-chat]').addEventListener('click', () => this.chat.newChat());
    // On the document: after a click on Send the focus may have fallen to the page's body, outside
    // the element; Escape stops the answer from any focus (but another chat element's).
    document.addEventListener('keydown', (e) => {
      const focus = document.activeElement;
      const another = focus instanceof SphinxChat && focus !== this;
      if (e.key === 'Escape' && this.isConnected && this.chat.busy && !another) {
        e.preventDefault();
        this.chat.stop();
      }
    });
    this.q('[data-image-yes]').addEventListener('click', () => this.#answerImageConfirm(true));
    this.q('[data-image-no]').addEventListener('click', () => this.#answerImageConfirm(false));
    this.q('[data-sample]').addEventListener('click', () => this.panel.takeUrl(new URL(this.getAttribute('sample-image'), location.href).href));
    this.q('[data-region-insert]').addEventListener('click', () => this.#insertRegion());
    this.q('[data-skip]').addEventListener('click', (e) => (e.preventDefault(), this.q('[data-question]').focus()));
    for (const input of this.q('[data-settings]').querySelectorAll('input')) input.addEventListener('input', () => this.#changed());
    const list = this.q('[data-shapes]');
    list.addEventListener('pointerover', (e) => e.target.closest('[data-g]') && this.#setHighlight(Number(e.target.closest('[data-g]').dataset.g)));
    list.addEventListener('pointerout', () => this.#setHighlight(-1));
    document.addEventListener('paste', (e) => this.isConnected && this.panel.paste(e));
  }

  #settingsFromAttributes() {
    for (const [name, v] of Object.entries(DEFAULTS)) {
      const attr = this.getAttribute(name);
      this.q(`[data-${name}]`).value = attr ?? String(v);
    }
  }

  /** The sampling settings, or a reason why they are not valid. */
  settings() {
    const num = (name) => Number(this.q(`[data-${name}]`).value);
    const s = { temperature: num('temperature'), topP: num('top-p'), maxTokens: num('max-tokens'), seed: num('seed') };
    if (!(s.temperature >= 0 && s.temperature <= 2)) return { error: 'Temperature must be between 0 and 2.' };
    if (!(s.topP > 0 && s.topP <= 1)) return { error: 'Top-p must be above 0 and at most 1.' };
    if (!Number.isInteger(s.maxTokens) || s.maxTokens < 1 || s.maxTokens > MAX_TOKENS) return { error: `Max tokens must be a whole number from 1 to ${MAX_TOKENS}.` };
    if (!Number.isSafeInteger(s.seed) || s.seed < 0) return { error: 'The seed must be a whole number of at least 0.' };
    return s;
  }

  /** Why nothing can be asked right now, or null. */
  #blocker() {
    if (this.chat.busy) return 'Answering… (Esc stops)';
    if (!this.loader.model) {
      if (!this.loader.loading) return 'The model is not loaded (see the message above).';
      const phase = this.loader.phase && this.loader.phase !== 'starting' ? `: ${this.loader.phase[0].toLowerCase()}${this.loader.phase.slice(1)}` : '';
      return `Waiting for the model to load${phase}…`;
    }
    if (this.#encoding) return 'Reading the image…';
    const s = this.settings();
    if (s.error) return s.error;
    return null;
  }

  /** Why Send is off right now, or null when it is on. */
  #reason() {
    const blocker = this.#blocker() ?? this.picker.imageMissing();
    if (blocker) return blocker;
    if (this.q('[data-question]').value.trim()) return null;
    return this.picker.missing() ?? 'Type a question or pick a task.';
  }

  #changed() {
    if (!this.chat || !this.picker) return; // still being built
    const reason = this.#reason();
    this.q('[data-send]').disabled = reason !== null;
    this.q('[data-stop]').disabled = !this.chat.busy;
    this.q('[data-reason]').textContent = reason ?? '';
  }

  emit(name, detail) {
    this.dispatchEvent(new CustomEvent(name, { detail, bubbles: true, composed: true }));
  }

  // ---- the image -----------------------------------------------------------------------------

  /** Whether a new image may be shown: at once when the chat is empty, else once the reader has
   *  agreed to start a new chat (the question is asked beside the image). */
  #mayReplaceImage() {
    if (!this.chat.records.length) return Promise.resolve(true);
    this.#answerImageConfirm(false); // an earlier question still open: the older image loses
    const box = this.q('[data-image-confirm]');
    box.hidden = false;
    this.q('[data-image-no]').focus();
    return new Promise((resolve) => (this.imageConfirm = resolve));
  }

  #answerImageConfirm(yes) {
    const resolve = this.imageConfirm;
    this.imageConfirm = null;
    this.q('[data-image-confirm]').hidden = true;
    resolve?.(yes);
  }

  #newImage(pixels) {
    this.#image?.dispose().catch(() => {});
    this.#image = null;
    if (this.chat.records.length) this.chat.newChat();
    this.#show(null);
    this.#encode(pixels);
    if (this.picker.task.fields.some((f) => f.kind === 'region')) this.panel.setTool(true);
    this.picker.refresh();
    this.picker.fill();
  }

  async #encode(pixels) {
    const status = (t) => (this.q('[data-image-status]').textContent = t);
    const model = this.loader.model;
    if (!model) {
      status(`Image ${pixels.width} × ${pixels.height}: it is read as soon as the model has loaded.`);
      return;
    }
    status(`Reading the ${pixels.width} × ${pixels.height} image…`);
    const pending = model.encodeImage(pixels);
    this.#encoding = pending;
    this.#changed();
    try {
      const image = await pending;
      if (this.#encoding !== pending || model !== this.loader.model) return image.dispose();
      this.#image = image;
      status(`Image ${pixels.width} × ${pixels.height} read in ${(image.encodeMs / 1000).toFixed(1)} s.`);
    } catch (e) {
      if (this.#encoding === pending) status(`Could not read the image: ${e.message}`);
    } finally {
      if (this.#encoding === pending) this.#encoding = null;
      this.#changed();
    }
  }

  #show(drawing) {
    this.#drawing = drawing;
    this.#highlight = -1;
    drawOverlay(this.panel.overlay, drawing);
    const n = listShapes(this.q('[data-shapes]'), drawing);
    this.q('[data-shapes-box]').hidden = n === 0;
    const canvas = this.panel.canvas;
    if (n > 0) canvas.setAttribute('aria-describedby', 'shapes');
    else canvas.removeAttribute('aria-describedby');
  }

  #setHighlight(i) {
    if (i === this.#highlight) return;
    this.#highlight = i;
    drawOverlay(this.panel.overlay, this.#drawing, i);
    for (const el of this.shadowRoot.querySelectorAll('[data-g]')) {
      el.classList.toggle('hl', Number(el.dataset.g) === i && (el.closest('li') || el.closest('.msg')?.getAttribute('aria-current') === 'true'));
    }
  }

  async #insertRegion() {
    const r = this.panel.region;
    if (!r) return;
    const box = this.q('[data-question]');
    const text = await regionText(r, this.panel.size);
    const at = box.selectionStart ?? box.value.length;
    box.value = `${box.value.slice(0, at)}${text}${box.value.slice(box.selectionEnd ?? at)}`;
    box.focus();
    this.#changed();
  }

  // ---- the public API ------------------------------------------------------------------------

  /** The loaded SphinxModel, or null. */
  get model() {
    return this.loader?.model ?? null;
  }
  /** The encoded image (SphinxImage), or null. */
  get image() {
    return this.#image;
  }
  /** The region drawn on the image, in image pixels {x1, y1, x2, y2}, or null. */
  get region() {
    return this.panel?.region ?? null;
  }
  /** The id of the picked task ('ask' for a free question). */
  get task() {
    return this.picker?.task.id ?? null;
  }
  selectTask(id) {
    return this.picker.select(id);
  }
  /** An image as a Blob/File or a URL. */
  setImage(source) {
    return typeof source === 'string' ? this.panel.takeUrl(source) : this.panel.takeFile(source);
  }
  /** Asks a question (the question box's text when none is given); resolves when answered. */
  async ask(question) {
    const text = String(question ?? '').trim();
    const s = this.settings();
    if (!text || s.error || this.#blocker() !== null) return;
    this.q('[data-question]').value = '';
    if (this.picker.task.id !== 'ask') this.picker.select('ask');
    await this.chat.send(text, s);
  }
  /** Shows `text` as an answer to `question` with its shapes drawn (e.g. a stored answer). */
  renderAnswer(text, { question } = {}) {
    return this.chat.renderAnswer(text, { question });
  }
}

if (!customElements.get('sphinx-chat')) customElements.define('sphinx-chat', SphinxChat);
