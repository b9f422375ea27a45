// Types of the sphinx-web package entry (index.js).

/** A progress event of loadSphinx. `loaded`/`total` count the bytes of the whole phase (all files);
 *  `fileLoaded`/`fileTotal` those of `file`. `note` (download phase) tells of a retry or a
 *  discarded corrupt file. */
export interface LoadProgress {
  phase: 'download' | 'verify' | 'upload' | 'compile';
  file: string | null;
  loaded: number;
  total: number;
  /** Network bytes per second over the last seconds (download phase; 0 elsewhere). */
  bytesPerSecond: number;
  fileLoaded?: number;
  fileTotal?: number;
  note?: string;
}

export interface LoadOptions {
  onProgress?: (event: LoadProgress) => void;
  /** Cancels the load; the cache stays consistent (a partial file resumes next time). */
  signal?: AbortSignal;
}

export interface AdapterInfo {
  adapter: string;
  backend: string;
  driver: string;
  shaderF16: boolean;
  subgroups: boolean;
  /** A CPU implementation of WebGPU (the browser's fallback adapter, e.g. SwiftShader): slow. */
  software: boolean;
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
}

export interface ModelInfo {
  adapter: AdapterInfo;
  model: {
    llamaType: string;
    release: string;
    imageSize: number;
    imageWords: number;
    vocabSize: number;
    maxSeqLen: number;
  };
  load: {
    totalBytes: number;
    /** Bytes fetched from the network by this load (0 when everything was cached). */
    downloadedBytes: number;
    persisted: boolean;
    downloadMs: number;
    uploadMs: number;
    compileMs: number;
    totalMs: number;
    /** Size of the wasm memory after the load: its peak, since wasm memory never shrinks. */
    wasmHeapBytes: number;
  };
}

/** RGBA pixels: a canvas ImageData or the same shape. */
export interface Pixels {
  data: Uint8ClampedArray | Uint8Array;
  width: number;
  height: number;
}

export interface SphinxImage {
  readonly id: number;
  readonly width: number;
  readonly height: number;
  /** How long the encoding took, in milliseconds. */
  readonly encodeMs: number;
  readonly model: SphinxModel;
  dispose(): Promise<void>;
}

export interface ChatMessage {
  role: 'user' | 'assistant';
  content: string;
}

export interface ChatOptions {
  /** Alternating turns starting with the user's, ending with the user's question. */
  messages: ChatMessage[];
  image?: SphinxImage;
  /** Default 512. */
  maxTokens?: number;
  /** 0 = greedy. Default 0.1 (the upstream demo's). */
  temperature?: number;
  /** Default 0.5. */
  topP?: number;
  /** Seed of the sampler (the same seed gives the same answer). Default 0. */
  seed?: number;
  signal?: AbortSignal;
}

/** One step of a streamed answer: a generated token and the text it completes (tokenId null for a
 *  final flush of text). Stop sequences are not part of the text. */
export interface ChatToken {
  tokenId: number | null;
  text: string;
}

export interface ChatResult {
  finish: 'stop' | 'length';
  tokens: number;
  promptTokens: number;
  firstTokenMs: number | null;
  totalMs: number;
}

export type Shape =
  | { kind: 'box'; x1: number; y1: number; x2: number; y2: number }
  | { kind: 'point'; x: number; y: number };

/** Boxes and points of a grounded answer, in the pixels of the image. */
export interface Drawing {
  groundings: {
    phrase: string | null;
    shapes: Shape[];
    /** [start, end) of `<p>…</p>` in the answer (UTF-16 units). */
    phraseRange: [number, number] | null;
    bracketRange: [number, number];
  }[];
  /** Lines between key points of a person (when the answer has 17 key points). */
  skeleton: [[number, number], [number, number]][];
}

export interface SphinxModel {
  readonly manifestUrl: string;
  readonly info: ModelInfo;
  encodeImage(image: ImageData | Pixels, options?: { signal?: AbortSignal }): Promise<SphinxImage>;
  chat(options: ChatOptions): AsyncGenerator<ChatToken, ChatResult, undefined>;
  parseAnswer(answer: string, size: { width: number; height: number }): Promise<Drawing>;
  dispose(): Promise<void>;
}

/** Loads the converted model `manifestUrl` names (downloading into browser storage what is not
 *  there yet) and builds it on WebGPU in a Web Worker.
 *
 *  Rejects with an Error whose `name` says why: `AbortError` (the signal), `QuotaExceededError`
 *  (browser storage too small, before downloading or when it fills up while writing; what was
 *  stored is kept and a later load resumes from it), or `Error` with a message naming the file
 *  (HTTP failures, SHA-256 mismatch after refetching, no WebGPU / no adapter, adapter limits). */
export function loadSphinx(manifestUrl: string | URL, options?: LoadOptions): Promise<SphinxModel>;

/** Removes what is stored for `manifestUrl`; resolves to whether anything was. */
export function clearCache(manifestUrl: string | URL): Promise<boolean>;

/** Bytes stored for `manifestUrl` (complete and partial files). */
export function cachedBytes(manifestUrl: string | URL): Promise<number>;
