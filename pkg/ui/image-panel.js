// The image side of <sphinx-chat>: an image from a file (button, drop, paste, Enter on the drop
// zone), the camera or a sample URL, drawn on a canvas at its own size once the element agrees (a
// new image clears the chat, so the element may ask first); and the region tool: a rectangle
// dragged on the image, or moved with the arrow keys (Shift resizes), or typed in pixels (clamped
// to the image). Regions are in image pixels; the element turns them into the model's fractions.

import { decodeImage } from '../pixels.js';

const KEY_STEP = 0.02; // of the image's width/height per arrow key press

export class ImagePanel {
  constructor(root, { onImage, onRegion, onStatus, mayReplace }) {
    this.q = (s) => root.querySelector(s);
    this.onImage = onImage;
    this.onRegion = onRegion;
    this.onStatus = onStatus;
    this.mayReplace = mayReplace; // async () => whether a new image may replace the shown one
    this.region = null; // {x1, y1, x2, y2} in image pixels
    this.drawing = false; // region tool on
    this.#wireInputs();
    this.#wireRegion();
  }

  get canvas() {
    return this.q('[data-image]');
  }
  get overlay() {
    return this.q('[data-overlay]');
  }
  get size() {
    const c = this.canvas;
    return c.width > 0 ? { width: c.width, height: c.height } : null;
  }

  #wireInputs() {
    const drop = this.q('[data-drop]');
    const file = this.q('[data-file]');
    this.q('[data-choose]').addEventListener('click', () => file.click());
    drop.addEventListener('keydown', (e) => {
      if (this.drawing && e.key.startsWith('Arrow')) {
        this.ensureKeyboardRegion();
        return this.#nudge(e);
      }
      // While drawing a region, Enter and Space belong to the region tool, not the file chooser.
      if ((e.key === 'Enter' || e.key === ' ') && this.drawing) {
        e.preventDefault();
        return;
      }
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        file.click();
      }
    });
    drop.addEventListener('click', (e) => {
      if (!this.size && e.target === drop) file.click();
    });
    drop.addEventListener('dragover', (e) => (e.preventDefault(), drop.classList.add('over')));
    drop.addEventListener('dragleave', () => drop.classList.remove('over'));
    drop.addEventListener('drop', (e) => {
      e.preventDefault();
      drop.classList.remove('over');
      this.takeFile(e.dataTransfer.files[0]);
    });
    file.addEventListener('change', () => {
      this.takeFile(file.files[0]);
      file.value = '';
    });
    this.q('[data-camera]').addEventListener('click', () => this.#openCamera());
    this.q('[data-snap]').addEventListener('click', () => this.#snap());
    this.q('[data-camera-close]').addEventListener('click', () => this.#closeCamera());
  }

  /** Paste of an image anywhere in the document (the element passes the event). */
  paste(e) {
    const item = [...(e.clipboardData?.items ?? [])].find((i) => i.type.startsWith('image/'));
    if (item) this.takeFile(item.getAsFile());
  }

  async takeFile(file) {
    if (!file) return;
    if (!file.type.startsWith('image/')) return this.onStatus(`${file.name || 'That file'} is not an image.`);
    let bitmap;
    try {
      bitmap = await decodeImage(file);
    } catch (e) {
      return this.onStatus(`Could not read the image: ${e.message}`);
    }
    await this.#showIfAllowed(bitmap);
  }

  /** Shows a decoded image once the element agrees (else drops it). */
  async #showIfAllowed(bitmap) {
    try {
      if (await this.mayReplace()) this.show(bitmap, bitmap.width, bitmap.height);
    } finally {
      bitmap.close();
    }
  }

  async takeUrl(url) {
    const resp = await fetch(url);
    if (!resp.ok) return this.onStatus(`Could not fetch the image (HTTP ${resp.status}).`);
    const blob = await resp.blob();
    return this.takeFile(new File([blob], url.split('/').pop() || 'image', { type: blob.type || 'image/png' }));
  }

  /** Draws a source (bitmap, video, canvas) at width x height and announces the new image. */
  show(source, width, height) {
    for (const c of [this.canvas, this.overlay]) {
      c.width = width;
      c.height = height;
    }
    this.canvas.getContext('2d', { willReadFrequently: true }).drawImage(source, 0, 0, width, height);
    this.canvas.setAttribute('aria-label', `The image, ${width} × ${height} pixels`);
    const stack = this.q('[data-stack]');
    stack.style.setProperty('--aspect', String(width / height));
    stack.hidden = false;
    this.q('[data-drop-hint]').hidden = true;
    this.q('[data-region-tool]').disabled = false;
    this.setRegion(null);
    this.onImage(this.pixels());
  }

  pixels() {
    const c = this.canvas;
    return c.getContext('2d', { willReadFrequently: true }).getImageData(0, 0, c.width, c.height);
  }

  async #openCamera() {
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({ video: true });
    } catch (e) {
      return this.onStatus(`No camera: ${e.message}`);
    }
    this.q('[data-video]').srcObject = this.stream;
    this.q('[data-camera-box]').hidden = false;
  }

  #closeCamera() {
    this.stream?.getTracks().forEach((t) => t.stop());
    this.stream = null;
    this.q('[data-camera-box]').hidden = true;
  }

  async #snap() {
    const v = this.q('[data-video]');
    const frame = v.videoWidth ? await createImageBitmap(v) : null;
    this.#closeCamera();
    if (frame) await this.#showIfAllowed(frame);
  }

  // ---- the region tool -----------------------------------------------------------------------

  #wireRegion() {
    const tool = this.q('[data-region-tool]');
    tool.addEventListener('click', () => this.setTool(!this.drawing));
    const stack = this.q('[data-stack]');
    stack.addEventListener('pointerdown', (e) => {
      if (!this.drawing || e.button !== 0) return;
      e.preventDefault();
      stack.setPointerCapture(e.pointerId);
      this.drag = this.toImage(e);
      this.setRegion({ ...this.drag, x2: this.drag.x1, y2: this.drag.y1 }, false);
    });
    stack.addEventListener('pointermove', (e) => {
      if (!this.drag) return;
      const p = this.toImage(e);
      this.setRegion({ x1: this.drag.x1, y1: this.drag.y1, x2: p.x1, y2: p.y1 }, false);
    });
    const end = (e) => {
      if (!this.drag) return;
      const p = this.toImage(e);
      const r = { x1: this.drag.x1, y1: this.drag.y1, x2: p.x1, y2: p.y1 };
      this.drag = null;
      this.setRegion(r.x1 === r.x2 || r.y1 === r.y2 ? null : r);
    };
    stack.addEventListener('pointerup', end);
    stack.addEventListener('pointercancel', end);
    for (const input of this.q('[data-region-fields]').querySelectorAll('[data-r]')) {
      input.addEventListener('change', () => this.#typed());
    }
    this.q('[data-region-clear]').addEventListener('click', () => this.setRegion(null));
  }

  /** Turns the region tool on or off; its help is the legend of its fields, shown with them (the
   *  image's status line stays the image's). */
  setTool(on) {
    if (on && !this.size) return;
    this.drawing = on;
    this.q('[data-region-tool]').setAttribute('aria-pressed', String(on));
    this.q('[data-stack]').classList.toggle('drawing', on);
    this.q('[data-region-fields]').hidden = !on;
  }

  /** The image pixel under a pointer event, clamped to the image, rounded. */
  toImage(e) {
    const r = this.canvas.getBoundingClientRect();
    const { width, height } = this.size;
    const x = Math.round(((e.clientX - r.left) * width) / r.width);
    const y = Math.round(((e.clientY - r.top) * height) / r.height);
    return { x1: Math.min(width, Math.max(0, x)), y1: Math.min(height, Math.max(0, y)) };
  }

  /** Sets the region (corners ordered), shows it, fills the fields; `done` tells the element. */
  setRegion(r, done = true) {
    this.region = r && { x1: Math.min(r.x1, r.x2), y1: Math.min(r.y1, r.y2), x2: Math.max(r.x1, r.x2), y2: Math.max(r.y1, r.y2) };
    const box = this.q('[data-region-box]');
    const size = this.size;
    box.hidden = !this.region || !size;
    if (this.region && size) {
      const { x1, y1, x2, y2 } = this.region;
      Object.assign(box.style, { left: `${(100 * x1) / size.width}%`, top: `${(100 * y1) / size.height}%`, width: `${(100 * (x2 - x1)) / size.width}%`, height: `${(100 * (y2 - y1)) / size.height}%` });
    }
    for (const input of this.q('[data-region-fields]').querySelectorAll('[data-r]')) {
      input.value = this.region ? String(this.region[input.dataset.r]) : '';
      if (size) input.max = String(input.dataset.r.startsWith('x') ? size.width : size.height);
    }
    if (done) this.onRegion(this.region);
  }

  /** A region typed into the fields: each value rounded and clamped to the image (the fields then
   *  show what is used); an empty or flat region is not applied, and the fields say why. */
  #typed() {
    const { width, height } = this.size ?? { width: 0, height: 0 };
    const inputs = [...this.q('[data-region-fields]').querySelectorAll('[data-r]')];
    const v = {};
    for (const input of inputs) {
      const n = input.value.trim() === '' ? NaN : Number(input.value);
      v[input.dataset.r] = Number.isFinite(n) ? Math.min(input.dataset.r.startsWith('x') ? width : height, Math.max(0, Math.round(n))) : NaN;
    }
    const ok = Object.values(v).every(Number.isFinite) && v.x1 !== v.x2 && v.y1 !== v.y2;
    for (const input of inputs) {
      if (Number.isFinite(v[input.dataset.r])) input.value = String(v[input.dataset.r]);
      input.setCustomValidity(ok || !Object.values(v).every(Number.isFinite) ? '' : 'The region needs a width and a height.');
    }
    if (ok) this.setRegion(v);
  }

  /** Arrow keys on the focused image: move the region, or with Shift resize it. */
  #nudge(e) {
    e.preventDefault();
    const { width, height } = this.size;
    const dx = Math.max(1, Math.round(width * KEY_STEP)) * ((e.key === 'ArrowRight') - (e.key === 'ArrowLeft'));
    const dy = Math.max(1, Math.round(height * KEY_STEP)) * ((e.key === 'ArrowDown') - (e.key === 'ArrowUp'));
    const r = { ...this.region };
    if (e.shiftKey) {
      r.x2 = Math.min(width, Math.max(r.x1 + 1, r.x2 + dx));
      r.y2 = Math.min(height, Math.max(r.y1 + 1, r.y2 + dy));
    } else {
      const mx = Math.min(width - r.x2, Math.max(-r.x1, dx));
      const my = Math.min(height - r.y2, Math.max(-r.y1, dy));
      Object.assign(r, { x1: r.x1 + mx, x2: r.x2 + mx, y1: r.y1 + my, y2: r.y2 + my });
    }
    this.setRegion(r);
  }

  /** With the tool on and no region yet, the keyboard starts from the middle half of the image. */
  ensureKeyboardRegion() {
    if (this.drawing && !this.region && this.size) {
      const { width: w, height: h } = this.size;
      this.setRegion({ x1: Math.round(w / 4), y1: Math.round(h / 4), x2: Math.round((3 * w) / 4), y2: Math.round((3 * h) / 4) });
    }
  }
}
