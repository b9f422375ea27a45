// The task picker of <sphinx-chat>: "Ask" (a free question) and SPHINX's tasks as chips; a task's
// field (a phrase, a class, a question, or the region drawn on the image) below them; choosing or
// editing fills the question box with the task's exact upstream prompt; example prompts per task.
// Every task but Ask is about an image: without one, the picker says so and Send waits for it.

import { TASKS, taskPrompt } from '../index.js';

export const ASK = Object.freeze({ id: 'ask', label: 'Ask', fields: [], shows: null });

/** Example questions (for Ask) and field values (for tasks with a text field). */
const EXAMPLES = {
  ask: ['What is in the image?', 'How many people are there?', 'What is written on the sign?'],
  rec: ['the person on the left', 'the red car', 'the largest dog'],
  detect: ['people', 'cars', 'dogs', 'traffic lights'],
  short_answer: ['What colour is the car?', 'Is it daytime?', 'How many animals are there?'],
};

export class TaskPicker {
  constructor(root, { region, size, onChange }) {
    this.q = (s) => root.querySelector(s);
    this.region = region; // () => the region in image pixels, or null
    this.size = size; // () => {width, height} of the image, or null
    this.onChange = onChange; // (task) => void: fields or prompt changed
    this.task = ASK;
    this.values = {};
    this.#renderChips();
    this.select('ask');
  }

  #renderChips() {
    const box = this.q('[data-tasks]');
    box.replaceChildren(
      ...[ASK, ...TASKS].map((t) => {
        const b = document.createElement('button');
        b.type = 'button';
        b.dataset.task = t.id;
        b.textContent = t.label;
        b.setAttribute('aria-pressed', 'false');
        b.addEventListener('click', () => this.select(t.id));
        return b;
      }),
    );
  }

  /** Picks a task by id: shows its field, fills the prompt. */
  select(id) {
    const task = [ASK, ...TASKS].find((t) => t.id === id);
    if (!task) throw new Error(`unknown task ${id}`);
    this.task = task;
    this.values = {};
    for (const b of this.q('[data-tasks]').children) b.setAttribute('aria-pressed', String(b.dataset.task === id));
    this.#renderFields();
    this.#renderExamples();
    if (id === 'ask') this.q('[data-question]').value = '';
    this.onChange(task);
    return this.fill();
  }

  #renderFields() {
    const box = this.q('[data-task-fields]');
    box.replaceChildren();
    for (const f of this.task.fields) {
      if (f.kind === 'region') {
        const p = document.createElement('p');
        p.className = 'small muted';
        p.dataset.regionHint = f.label;
        box.append(p);
        continue;
      }
      const label = document.createElement('label');
      const input = document.createElement('input');
      input.type = 'text';
      input.dataset.field = f.name;
      input.placeholder = f.placeholder ?? '';
      input.addEventListener('input', () => {
        this.values[f.name] = input.value;
        this.fill();
      });
      label.append(f.label, input);
      box.append(label);
    }
    this.refresh();
  }

  /** Updates what depends on the image being there (the region hint). */
  refresh() {
    const hint = this.q('[data-region-hint]');
    if (!hint) return;
    const label = hint.dataset.regionHint;
    hint.textContent = this.size() ? `${label}: draw it on the image (the region tool is on).` : `${label}: add an image first, then draw the region on it.`;
  }

  #renderExamples() {
    const box = this.q('[data-examples]');
    const list = EXAMPLES[this.task.id] ?? [];
    box.replaceChildren();
    if (!list.length) return;
    box.append(Object.assign(document.createElement('span'), { className: 'muted', textContent: 'Try:' }));
    for (const ex of list) {
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = ex;
      b.addEventListener('click', () => this.#useExample(ex));
      box.append(b);
    }
  }

  #useExample(ex) {
    const field = this.task.fields.find((f) => f.kind === 'text');
    if (!field) {
      this.q('[data-question]').value = ex;
      this.onChange(this.task);
      return;
    }
    const input = this.q(`[data-field="${field.name}"]`);
    input.value = ex;
    this.values[field.name] = ex;
    this.fill();
  }

  /** Why the task cannot run for want of an image (every task but Ask is about one), or null. */
  imageMissing() {
    return this.task.id !== 'ask' && !this.size() ? `“${this.task.label}” is about an image: add one first (drop, paste or choose a file).` : null;
  }

  /** Whether the task has what it needs (an image, its region); the reason when it has not. */
  missing() {
    if (this.imageMissing()) return this.imageMissing();
    if (this.task.fields.some((f) => f.kind === 'region') && !this.region()) return 'Draw the region of the person on the image first.';
    return null;
  }

  /** Writes the task's prompt into the question box (nothing for Ask, or while a field is empty). */
  async fill() {
    if (this.task.id === 'ask') return;
    const q = this.q('[data-question]');
    const task = { task: this.task.id, ...this.values };
    if (this.task.fields.some((f) => f.kind === 'region')) task.region = this.region();
    const incomplete = this.task.fields.some((f) => (f.kind === 'region' ? !task.region : !String(task[f.name] ?? '').trim()));
    const want = this.task;
    const text = incomplete ? '' : await taskPrompt(task, this.size() ?? undefined).catch((e) => (console.warn(e.message), ''));
    if (this.task === want) q.value = text;
    this.onChange(this.task);
  }
}
