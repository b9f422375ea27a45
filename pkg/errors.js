// The messages of the failures a person can act on, shared by the page side, the worker and the
// <sphinx-chat> element: the engine's own messages stay exact (and in `details`), and `explain`
// turns them into plain language with what to do next.

/** A browser without WebGPU (no navigator.gpu). */
export const NO_WEBGPU =
  'WebGPU is not available in this browser (navigator.gpu is missing): use a recent Chrome, Edge or ' +
  'Safari over https:// or http://localhost, and check that WebGPU is enabled';

/** The start of the engine's message for a browser whose WebGPU offers no adapter (web/src/session.rs). */
export const NO_ADAPTER = 'WebGPU is available but no GPU adapter was found';

const KINDS = [
  {
    kind: 'no-webgpu',
    test: (m) => m.includes('navigator.gpu is missing'),
    title: 'This browser cannot run SPHINX: it has no WebGPU.',
    help:
      'Open this page in a browser with WebGPU: Chrome or Edge 113 or newer on Windows, macOS or ChromeOS, ' +
      'Chrome 121 or newer on Android, Safari 26 or newer, or Firefox 141 or newer on Windows. ' +
      'The page must come from https:// or from localhost.',
  },
  {
    kind: 'no-adapter',
    test: (m) => m.includes(NO_ADAPTER),
    title: 'WebGPU is switched on, but the browser offered no graphics processor to use.',
    help:
      'The GPU may be blocked by the browser or its driver may be too old. Update the graphics driver and the ' +
      'browser; in Chrome or Edge, chrome://gpu shows why WebGPU is off, and chrome://flags/#enable-unsafe-webgpu ' +
      'can turn it on; or try another browser or computer.',
  },
  {
    kind: 'storage',
    test: (m, e) => e?.name === 'QuotaExceededError' || m.includes('not enough browser storage'),
    title: 'There is not enough browser storage for this model.',
    help: 'Free disk space, or clear the stored data of this site (or of other models below), then try again.',
  },
  {
    kind: 'gpu-limits',
    test: (m) => m.includes('maxBufferSize') || m.includes('maxStorageBufferBindingSize'),
    title: 'This GPU cannot hold this model.',
    help: 'Pick a smaller model (q4 needs the least memory) or use a computer with a larger GPU.',
  },
  {
    kind: 'device-lost',
    test: (m) => m.includes('device lost'),
    title: 'The GPU stopped working for this page (the browser reset it).',
    help: 'Load the model again: its weights stay stored, so it does not download again.',
  },
  {
    kind: 'network',
    test: (m) => /HTTP \d{3}|Failed to fetch|NetworkError|network error|did not answer|connection dropped|download failed|SHA-256 mismatch/.test(m),
    title: 'The model could not be downloaded.',
    help: 'Check the connection and the model address, then retry; what was downloaded is kept.',
  },
];

/** {kind, title, help, details} of an error: plain language first, the exact message in details. */
export function explain(error) {
  const message = error?.message ?? String(error);
  for (const k of KINDS) {
    if (k.test(message, error)) return { kind: k.kind, title: k.title, help: k.help, details: message };
  }
  return { kind: 'other', title: 'Something went wrong.', help: '', details: message };
}
