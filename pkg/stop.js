// Stop strings of a chat request (OpenAI's `stop`), applied to the streamed text in the model's worker:
// text that may be the start of a stop string is held back until it is known not to be one.

/** Holds back text that may be the start of a stop string; `push` returns what is safe to emit and
 *  whether a stop string was reached (the text from the stop string on is dropped). */
export class StopFilter {
  #stops;
  #held = '';
  constructor(stops) {
    this.#stops = stops;
  }
  push(text) {
    const all = this.#held + text;
    let cut = -1;
    for (const s of this.#stops) {
      const k = all.indexOf(s);
      if (k >= 0 && (cut < 0 || k < cut)) cut = k;
    }
    if (cut >= 0) {
      this.#held = '';
      return { text: all.slice(0, cut), stopped: true };
    }
    let keep = 0;
    for (const s of this.#stops) {
      for (let n = Math.min(s.length - 1, all.length); n > keep; n--) {
        if (all.endsWith(s.slice(0, n))) {
          keep = n;
          break;
        }
      }
    }
    this.#held = all.slice(all.length - keep);
    return { text: all.slice(0, all.length - keep), stopped: false };
  }
  flush() {
    const t = this.#held;
    this.#held = '';
    return t;
  }
}
