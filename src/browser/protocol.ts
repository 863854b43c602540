/**
 * Messages between ppd's browser page (page.ts, the main thread) and the Web Worker that runs
 * the engine (worker.ts), and the manifest a server writes for the page's default model. Types
 * only: the page and the worker are bundled separately and share nothing else.
 */
import type { GenerationStats } from '../generate/generate.ts';
import type { ExecutionProvider } from '../runtime/ort-web.ts';

export type { ExecutionProvider };

/**
 * `manifest.json` beside the page: the model the page loads by default (files under
 * `model.path`, relative to the manifest) and its PPD adapter, when it has one.
 */
export interface BrowserManifest {
  schema: 'ppd.browser-manifest/1';
  /** The model and adapter files need `Authorization: Bearer <key>` (a server started with --api-key). */
  auth?: boolean;
  model: {
    /** Shown on the page (the model folder's or GGUF file's name). */
    name: string;
    path: string;
    /** Files of a model folder, or the one .gguf file. */
    files: string[];
  };
  adapter?: {
    path: string;
    files: string[];
    /** The tree-set file to decode with (one of `files`). */
    trees: string;
    /** Most context-lookup tokens per PPD step (0: none). */
    lookup: number;
  };
}

/** Where the worker gets a model: the manifest's, or files the user picked. */
export type ModelSource =
  | { kind: 'manifest'; url: string; apiKey?: string }
  /** A folder picked with <input webkitdirectory>: files carry webkitRelativePath. */
  | { kind: 'folder'; files: File[] }
  | { kind: 'gguf'; file: File };

export interface LoadRequest {
  type: 'load';
  source: ModelSource;
  provider: ExecutionProvider;
  threads: number;
  /** URL prefix of ORT's .wasm/.mjs files. */
  wasmPaths: string;
}

export interface GenerateRequest {
  type: 'generate';
  prompt: string;
  /** Render the prompt as one user message through the model's chat template. */
  chat: boolean;
  maxTokens: number;
  ppd: boolean;
  /** PPD guesses from the adapter's prompt tokens (its trees); false: from the context lookup alone. */
  promptTokens: boolean;
  /** Most context-lookup tokens per PPD step (0: none). */
  lookup: number;
  temperature: number;
  seed: number;
  /** Run to maxTokens even past EOS (benchmarks time generations of one length). */
  ignoreEos?: boolean;
}

/** The next-token logits after `ids` (one prefill): for parity checks against Node's engine. */
export interface LogitsRequest {
  type: 'logits';
  ids: number[];
}

export type ToWorker = LoadRequest | GenerateRequest | LogitsRequest | { type: 'stop' };

export interface ModelInfo {
  name: string;
  /** e.g. "llama, 8 layers, hidden 256, vocab 8000" */
  summary: string;
  runtime: string;
  /** Whether the graph was compiled now or found compiled in the browser's cache. */
  graph: 'compiled' | 'cached';
  hasChatTemplate: boolean;
  /** The adapter's default lookup, when the model has a PPD adapter. */
  ppd?: { promptTokens: number; trees: string; lookup: number };
  loadSeconds: number;
}

/** Which trees a PPD generation with prompt tokens decoded with. */
export interface TreesInfo {
  /** 'page': chosen in this page from its own forward latencies (ppd/quick-calibration.ts); 'file': the manifest's tree-set file. */
  source: 'page' | 'file';
  /** Input rows of the set's widest tree; 1: no prompt-token rows (the context lookup alone). */
  rows: number;
  /** The page's measurement: the fastest predicted size and its predicted speedup over plain decoding. */
  fastest?: { n: number; speedup: number };
}

export type FromWorker =
  | { type: 'progress'; stage: string; done: number; total: number }
  | { type: 'ready'; model: ModelInfo }
  /** One decoding step: its accepted ids and the text that became final with them. */
  | { type: 'piece'; text: string; ids: number[] }
  | { type: 'done'; text: string; ids: number[]; stats: GenerationStats; mode: 'ppd' | 'plain'; trees?: TreesInfo }
  | { type: 'logits'; logits: Float32Array }
  | { type: 'error'; message: string };
