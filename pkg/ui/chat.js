// The conversation of <sphinx-chat>: sends a question with the chat so far, streams the answer into
// the log (following it while the reader is at the bottom, its figures line included), renders
// phrases and shapes as the text grows (a chart→table answer as a table, without its raw pipes),
// keeps each answer's shapes (a click on an answer shows them), and ends every answer cleanly: Stop
// before the first token takes the empty turn back at once (the engine stops in the background),
// New chat during an answer starts a fresh conversation that the old answer cannot touch, a length
// limit is said.

import { parseAnswer } from '../index.js';
import { answerNodes, statsText, tableNode, withoutTable } from './answer.js';
import { readingOrder } from './overlay.js';

const RENDER_MS = 80;

/** A conversation: its finished turns. A new chat is a new object, so a late answer of the old one
 *  writes only into the old one. */
class Conversation {
  turns = [];
  messages(question) {
    return [...this.turns.flatMap((t) => [{ role: 'user', content: t.question }, { role: 'assistant', content: t.answer }]), { role: 'user', content: question }];
  }
}

export class Chat {
  constructor(root, host) {
    this.q = (s) => root.querySelector(s);
    this.host = host;
    this.conv = new Conversation();
    this.busy = null; // {ctl, record} of the answer being generated
    this.records = []; // answers in the log: {el, question, answer, drawing}
    this.shown = null;
    this.#wireLog();
  }

  #wireLog() {
    const log = this.q('[data-log]');
    const gOf = (e) => e.target.closest?.('[data-g]');
    const recOf = (el) => this.records.find((r) => r.el.contains(el));
    const hover = (e) => {
      const el = gOf(e);
      const rec = el && recOf(el);
      if (!rec) return;
      if (rec !== this.shown) this.show(rec);
      this.host.highlight(Number(el.dataset.g));
    };
    log.addEventListener('pointerover', hover);
    log.addEventListener('focusin', hover);
    log.addEventListener('pointerout', (e) => gOf(e) && this.host.highlight(-1));
    log.addEventListener('focusout', (e) => gOf(e) && this.host.highlight(-1));
    log.addEventListener('click', (e) => {
      const rec = recOf(e.target);
      if (rec && !e.target.closest('[data-copy]')) this.show(rec);
    });
  }

  #message(role, text) {
    const div = document.createElement('article');
    div.className = `msg ${role}`;
    const who = document.createElement('div');
    who.className = 'who';
    who.append(Object.assign(document.createElement('span'), { className: 'grow', textContent: role === 'user' ? 'You' : role === 'error' ? 'Error' : 'SPHINX' }));
    const body = Object.assign(document.createElement('div'), { className: 'text', textContent: text });
    div.append(who, body);
    this.#append(div);
    return div;
  }

  /** Runs `change` on the log, keeping it scrolled to the end when the reader was there. */
  #following(change) {
    const log = this.q('[data-log]');
    const follow = log.scrollHeight - log.scrollTop - log.clientHeight < 48;
    change();
    if (follow) log.scrollTop = log.scrollHeight;
  }

  #append(el) {
    this.#following(() => this.q('[data-log]').append(el));
  }

  #setStats(rec, text) {
    this.#following(() => (rec.stats.textContent = text));
  }

  #assistant(question) {
    const el = this.#message('assistant', '');
    el.tabIndex = 0;
    const copy = Object.assign(document.createElement('button'), { type: 'button', textContent: 'Copy' });
    copy.dataset.copy = '';
    el.querySelector('.who').append(copy);
    const stats = Object.assign(document.createElement('div'), { className: 'stats' });
    el.append(stats);
    const rec = { el, question, answer: '', drawing: null, stats };
    copy.addEventListener('click', () => this.#copy(rec, copy));
    this.records.push(rec);
    return rec;
  }

  async #copy(rec, button) {
    try {
      await navigator.clipboard.writeText(rec.answer);
      button.textContent = 'Copied';
    } catch {
      const range = document.createRange();
      range.selectNodeContents(rec.el.querySelector('.text'));
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      button.textContent = 'Selected: Ctrl+C';
    }
    setTimeout(() => (button.textContent = 'Copy'), 2000);
  }

  /** Parses and renders an answer's text, shapes and table; shows its shapes if it is shown. */
  async #render(rec) {
    const size = this.host.size();
    const text = rec.answer;
    const drawing = readingOrder(await parseAnswer(text, size ?? { width: 1, height: 1 }));
    if (rec.answer !== text) return; // a newer render is on its way
    if (!size) drawing.groundings = [];
    rec.drawing = drawing;
    const body = rec.el.querySelector('.text');
    this.#following(() => {
      // A table is shown as a table: its raw rows are not repeated above it.
      if (drawing.table) body.textContent = withoutTable(text);
      else body.replaceChildren(...answerNodes(text, drawing));
      body.hidden = body.textContent === '';
      rec.el.querySelector('table')?.remove();
      if (drawing.table) body.after(tableNode(drawing.table));
    });
    if (this.shown === rec) this.host.showDrawing(drawing);
  }

  #scheduleRender(rec) {
    if (rec.timer) return;
    rec.timer = setTimeout(() => {
      rec.timer = null;
      this.#render(rec);
    }, RENDER_MS);
  }

  /** Shows an answer's shapes on the image and marks it as the shown one. */
  show(rec) {
    for (const r of this.records) r.el.removeAttribute('aria-current');
    this.shown = rec;
    rec?.el.setAttribute('aria-current', 'true');
    this.host.showDrawing(rec?.drawing ?? null);
  }

  /** Asks `question` in this conversation; resolves when the answer has ended (any way). */
  async send(question, settings) {
    const model = this.host.model();
    if (!model || this.busy) return;
    const conv = this.conv;
    this.#message('user', question);
    const rec = this.#assistant(question);
    this.show(rec);
    const ctl = new AbortController();
    // What stop() needs to end the answer at once: its figures so far.
    const busy = { ctl, rec, conv, t0: performance.now(), first: null, tokens: 0 };
    this.busy = busy;
    this.host.changed();
    try {
      const it = model.chat({ messages: conv.messages(question), image: this.host.image() ?? undefined, ...settings, signal: ctl.signal });
      for (;;) {
        const { value, done } = await it.next();
        if (rec.stopped) {
          if (done) return;
          continue; // stopped by the reader: the engine is catching up
        }
        if (done) return await this.#finished(rec, conv, value, settings);
        busy.first ??= performance.now() - busy.t0;
        if (value.tokenId !== null) busy.tokens++;
        rec.answer += value.text;
        this.#scheduleRender(rec);
      }
    } catch (e) {
      if (rec.stopped) return;
      if (e?.name !== 'AbortError') return this.#failed(rec, e);
      await this.#stopped(rec, conv, this.#statsOf(busy));
    } finally {
      clearTimeout(rec.timer);
      rec.timer = null;
      if (this.busy === busy) this.busy = null;
      this.host.changed();
    }
  }

  #statsOf({ first, tokens, t0 }) {
    return { firstTokenMs: first, tokens, totalMs: performance.now() - t0 };
  }

  async #finished(rec, conv, result, settings) {
    await this.#render(rec);
    rec.finish = result.finish;
    this.#setStats(rec, statsText({ ...result, maxTokens: settings.maxTokens }));
    if (conv === this.conv) conv.turns.push({ question: rec.question, answer: rec.answer });
    this.q('[data-announce]').textContent = `SPHINX: ${rec.el.querySelector('.text').textContent}`;
    this.host.emit('answer', { question: rec.question, answer: rec.answer, finish: result.finish, stats: result, drawing: rec.drawing });
  }

  /** Stopped before the first token: no turn at all; the question goes back into the box. */
  #withdraw(rec, conv) {
    rec.el.previousElementSibling?.remove();
    rec.el.remove();
    this.records = this.records.filter((r) => r !== rec);
    if (this.shown === rec) this.show(null);
    if (conv === this.conv) this.host.restoreQuestion(rec.question);
    this.q('[data-announce]').textContent = 'Stopped before the answer began.';
  }

  /** An answer stopped by the reader: its figures at once, its text rendered as it stands. */
  async #stopped(rec, conv, stats) {
    if (!rec.answer) return this.#withdraw(rec, conv);
    rec.finish = 'aborted';
    this.#setStats(rec, statsText({ ...stats, finish: 'aborted' }));
    if (conv === this.conv) conv.turns.push({ question: rec.question, answer: rec.answer });
    await this.#render(rec);
  }

  #failed(rec, e) {
    rec.el.className = 'msg error';
    rec.el.querySelector('.text').textContent = e?.message ?? String(e);
    this.host.emit('error', { kind: 'answer', title: 'The answer failed.', help: '', details: e?.message ?? String(e) });
  }

  /** Stops the answer being generated, at once: what came so far stays (before its first token
   *  the turn is taken back and the question returns to the box), and the chat is free again.
   *  The engine is asked to stop too; where it computes without pausing (the CPU backend) it
   *  finishes in the background first, and a next question waits for it there. */
  stop() {
    const busy = this.busy;
    if (!busy) return;
    busy.ctl.abort();
    busy.rec.stopped = true;
    clearTimeout(busy.rec.timer);
    busy.rec.timer = null;
    this.busy = null;
    this.#stopped(busy.rec, busy.conv, this.#statsOf(busy));
    this.host.changed();
  }

  /** Ends the conversation (stopping its answer) and clears the log. */
  newChat() {
    if (this.busy) {
      // The old answer is dropped at once: nothing of it reaches the page (nor an `answer` event).
      this.busy.ctl.abort();
      this.busy.rec.stopped = true;
      clearTimeout(this.busy.rec.timer);
    }
    this.busy = null;
    this.conv = new Conversation();
    this.records = [];
    this.show(null);
    this.q('[data-log]').replaceChildren();
    this.host.changed();
  }

  /** Shows `answer` as the model's answer to `question` (a stored answer, say), in this
   *  conversation, and draws its shapes. */
  async renderAnswer(answer, { question = '' } = {}) {
    if (question) this.#message('user', question);
    const rec = this.#assistant(question);
    rec.answer = String(answer);
    this.show(rec);
    await this.#render(rec);
    this.#setStats(rec, 'shown from text');
    this.conv.turns.push({ question, answer: rec.answer });
    return rec.drawing;
  }
}
