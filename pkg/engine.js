// The wasm engine on the page's own thread, for the small synchronous helpers that need no GPU and no
// model (task prompts, regions, answer parsing): instantiated once, on first use, from the same
// wasm file the worker runs (the browser's cache serves it to both).

import init, * as wasm from './wasm/sphinx_web.js';

let ready = null;

/** Resolves to the wasm module's exports once it is instantiated. */
export function engine() {
  ready ??= init().then(() => wasm);
  return ready;
}
