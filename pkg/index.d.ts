// Types of the sphinx-web package entry (index.js).

/** A progress event of loadSphinx. `loaded`/`total` count the bytes of the whole phase (all files);
 *  `fileLoaded`/`fileTotal` those of `file`. `note` (download phase) tells of a retry or a
 *  discarded corrupt file. */
export interface LoadProgress {
  phase: 'download' | 'verify' | 'upload' | 'autotune' | 'compile';
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
  /** 'auto' (default): f16 where the adapter has shader-f16, else f32. 'f16' stores f32 weights as
   *  f16 and keeps the KV cache in f16 (sums stay f32); it fails on adapters without shader-f16. */
  precision?: 'auto' | 'f32' | 'f16';
  /** Kernel autotuning on this device: 'cached' (default: time only the shapes the stored choices
   *  lack), 'fresh' (time all again), 'off' (the default kernels). Choices are stored in this
   *  origin's storage, keyed by adapter, engine version and shape. */
  autotune?: 'cached' | 'fresh' | 'off';
  /** 'adapter' (default): the device gets every limit the adapter offers. 'default': only WebGPU's
   *  default limits (128 MiB per storage binding, 256 MiB per buffer — what many phones and iOS
   *  Safari grant); weights are split and activations processed view by view to fit. */
  limits?: 'adapter' | 'default';
}

/** What autotuning did during a load. */
export interface AutotuneReport {
  mode: 'cached' | 'fresh' | 'off';
  /** Shape classes (weight format, decode or batch rows, size) of the model. */
  shapes: number;
  /** Taken from the stored choices. */
  cached: number;
  /** Timed on this device during this load. */
  tuned: number;
  /** Left at the default kernel (the time budget was spent; a later load tunes them). */
  skipped: number;
  /** Milliseconds spent timing kernels (0 when everything came from the stored choices). */
  ms: number;
  timer: 'timestamp-query' | 'wall-clock';
}

export interface GpuMemory {
  /** Bytes of GPU buffers now: weights, activations, KV cache, scratch. */
  allocatedBytes: number;
  /** The most there ever were at once. */
  peakBytes: number;
}

export interface BenchReport {
  device: string;
  precision: 'f32' | 'f16';
  phases: { name: string; ms: number; detail: string }[];
  /** With `roofline`: computeShare = gflops ÷ the GEMM peak, bandwidthShare = gbps ÷ the bandwidth. */
  kernels: { name: string; variant: string; tuned: boolean; ms: number; gflops: number; gbps: number; computeShare?: number; bandwidthShare?: number }[];
  decode: { tokens: number; tokensPerSecond: number; bytesPerToken: number; gbPerSecond: number } | null;
  gpuPeakBytes: number;
  promptTokens: number;
  /** promptTokens ÷ the median prefill time. */
  prefillTokensPerSecond: number;
  reps: number;
  /** The greedy ids of the last repetition (the first from the prefill). */
  ids: number[];
  /** GFLOP of one image encode's and one prefill's matrix products and attention. */
  encodeGflop: number | null;
  prefillGflop: number;
  /** With `roofline`: the device's limits measured in the same run (the bandwidth a phase that
   *  reads memory is held to is the larger of readGbps and copyGbps) and each phase against them. */
  roofline?: { readGbps: number; copyGbps: number; bytes: number; gemmGflops: number; gemmShape: [number, number, number]; gemmKernel: string };
  efficiency?: { phase: string; unit: 'GB/s' | 'GFLOP/s'; reached: number; limit: number; share: number }[];
}

export interface KernelSelfTest {
  runs: number;
  maxAbsError: number;
  failures: string[];
}

export interface AdapterInfo {
  adapter: string;
  backend: string;
  driver: string;
  shaderF16: boolean;
  /** GPU timestamp queries (autotuning times kernels with them; else with fenced wall time). */
  timestamps: boolean;
  /** Reported only: no kernel uses subgroups (wgpu's WebGPU backend cannot request them yet). */
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
    precision: 'f32' | 'f16';
    /** What the engine refuses past; the package checks requests against these before any work. */
    limits: {
      maxImageSide: number;
      maxImagePixels: number;
      maxImageFileBytes: number;
      /** The most tokens an answer may ask for (the engine's longest context). */
      maxTokens: number;
      maxStopTexts: number;
      maxStopTextBytes: number;
    };
  };
  load: {
    totalBytes: number;
    /** Bytes fetched from the network by this load (0 when everything was cached). */
    downloadedBytes: number;
    persisted: boolean;
    downloadMs: number;
    uploadMs: number;
    compileMs: number;
    autotuneMs: number;
    autotune: AutotuneReport;
    totalMs: number;
    /** Size of the wasm memory after the load: its peak, since wasm memory never shrinks. */
    wasmHeapBytes: number;
  };
  /** GPU buffers after the load. */
  gpu: GpuMemory;
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
  /** Replaces the upstream template's system line ("A chat between a curious human and …"). */
  system?: string;
  /** Alternating turns starting with the user's, ending with the user's question. */
  messages: ChatMessage[];
  /** Strings that end the answer where they first appear (they are not part of the text); the
   *  finish is then 'stop'. At most 4, each non-empty and at most 256 bytes (the engine's rule). */
  stop?: string[];
  image?: SphinxImage;
  /** Default 512; at most 65536 (the engine's longest context). */
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

/** Boxes and points of a grounded answer, in the pixels of the image; the table of a chart→table
 *  answer. */
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
  /** Rows of cells when the answer is a table (Markdown pipes, DePlot's `<0x0A>` rows or `&&&`
   *  rows), else null. */
  table: string[][] | null;
}

export interface SphinxModel {
  readonly manifestUrl: string;
  readonly info: ModelInfo;
  /** Whether dispose() was called. */
  readonly disposed: boolean;
  encodeImage(image: ImageData | Pixels, options?: { signal?: AbortSignal }): Promise<SphinxImage>;
  chat(options: ChatOptions): AsyncGenerator<ChatToken, ChatResult, undefined>;
  parseAnswer(answer: string, size: { width: number; height: number }): Promise<Drawing>;
  /** Every kernel variant the autotuner may pick, run on this GPU against the CPU reference. */
  kernelSelfTest(): Promise<KernelSelfTest>;
  gpuMemory(): Promise<GpuMemory>;
  /** Destroys the GPU device as a lost device would (for tests of that path). */
  loseDevice(): Promise<void>;
  /** Times one question on this device (as `sphinx bench --model --json`). */
  bench(options?: { image?: ImageData | Pixels; tokens?: number; promptTokens?: number; reps?: number; text?: string; roofline?: boolean }): Promise<BenchReport>;
  /** OpenAI's chat API over this model (see OpenAIChatRequest). */
  readonly openai: { chat: { completions: { create: OpenAICreate } } };
  dispose(): Promise<void>;
}

// ---- SPHINX's tasks ------------------------------------------------------------------------------

export type TaskId =
  | 'general_qa' | 'detailed_description' | 'caption' | 'rec' | 'grounded_caption'
  | 'detect' | 'keypoints' | 'text_spotting' | 'chart_to_table' | 'short_answer';

export interface TaskField {
  /** The key of the field in a Task (`phrase`, `class`, `question`, `region`). */
  name: 'phrase' | 'class' | 'question' | 'region';
  kind: 'text' | 'region';
  label: string;
  placeholder?: string;
}

export interface TaskInfo {
  id: TaskId;
  label: string;
  fields: readonly TaskField[];
  /** What the answer brings to draw. */
  shows: 'boxes' | 'points' | 'table' | null;
}

/** The tasks SPHINX was tuned on, in the order a page lists them. */
export const TASKS: readonly TaskInfo[];

/** A region in image pixels. */
export interface Region {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
}

export type Task =
  | { task: 'general_qa' | 'detailed_description' | 'caption' | 'grounded_caption' | 'text_spotting' | 'chart_to_table' }
  | { task: 'rec'; phrase: string }
  | { task: 'detect'; class: string }
  | { task: 'keypoints'; region: Region | [number, number, number, number] }
  | { task: 'short_answer'; question: string };

export interface Size {
  width: number;
  height: number;
}

/** The exact upstream user message of a task. A `region` in image pixels needs the image's size
 *  (a Size or a SphinxImage); `[x1, y1, x2, y2]` are padded-square fractions already. Rejects naming
 *  the task and the missing field. */
export function taskPrompt(task: Task, size?: Size): Promise<string>;

/** A region in image pixels as the bracket the model reads: "[0.10, 0.20, 0.50, 0.60]". */
export function regionText(region: Region, size: Size): Promise<string>;

/** Boxes, points, skeleton and table of an answer, in the pixels of an image of `size`. */
export function parseAnswer(answer: string, size: Size): Promise<Drawing>;

/** The task ids the engine knows (the same as TASKS'). */
export function taskIds(): Promise<TaskId[]>;

/** Plain language for an error of loadSphinx (no WebGPU, no adapter, storage, GPU limits, device
 *  lost, network), with the exact message in `details`. */
export function explain(error: unknown): {
  kind: 'no-webgpu' | 'no-adapter' | 'storage' | 'gpu-limits' | 'device-lost' | 'network' | 'other';
  title: string;
  help: string;
  details: string;
};

// ---- OpenAI's shape --------------------------------------------------------------------------------

export type OpenAIContentPart =
  | { type: 'text'; text: string }
  /** data:, blob: or same-origin URLs; SPHINX reads one image per conversation. */
  | { type: 'image_url'; image_url: { url: string; detail?: string } };

export interface OpenAIChatRequest {
  /** Echoed back; the model is the loaded one. */
  model?: string;
  /** An optional first system (or developer) message, then user/assistant turns ending with the user's. */
  messages: { role: 'system' | 'developer' | 'user' | 'assistant'; content: string | OpenAIContentPart[] }[];
  /** Defaults: SPHINX's (512 tokens, temperature 0.1, top_p 0.5, seed 0), not OpenAI's. */
  max_tokens?: number;
  max_completion_tokens?: number;
  temperature?: number;
  top_p?: number;
  seed?: number;
  stop?: string | string[];
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  /** Only 1. */
  n?: number;
}

export interface OpenAIUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: { index: 0; message: { role: 'assistant'; content: string; refusal: null }; finish_reason: 'stop' | 'length'; logprobs: null }[];
  usage: OpenAIUsage;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: { index: 0; delta: { role?: 'assistant'; content?: string }; finish_reason: 'stop' | 'length' | null; logprobs: null }[];
  /** With stream_options.include_usage: null on each chunk, the totals on a last chunk without choices. */
  usage?: OpenAIUsage | null;
}

export interface OpenAICreate {
  (request: OpenAIChatRequest & { stream: true }, options?: { signal?: AbortSignal }): Promise<AsyncIterable<ChatCompletionChunk> & { controller: AbortController }>;
  (request: OpenAIChatRequest & { stream?: false }, options?: { signal?: AbortSignal }): Promise<ChatCompletion>;
}

/** An error in OpenAI's shape (like the OpenAI SDK's APIError): `status` 400 for a bad request
 *  (`code` 'context_length_exceeded' for a prompt past the context), 404 'model_not_found' once
 *  the model is disposed, 500 for a failure of the engine. */
export class OpenAIError extends Error {
  readonly status: number;
  readonly type: string;
  readonly param: string | null;
  readonly code: string | null;
  readonly error: { message: string; type: string; param: string | null; code: string | null };
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
