/**
 * The engine in a Web Worker: loads a model (the server's default from its manifest, or files
 * the user picked) onto onnxruntime-web and runs generations for the page, posting each decoding
 * step's tokens as they are accepted. The same model, decoding and generation code as on Node;
 * only the files (blob-file.ts) and the runtime (ort-web.ts) are the browser's.
 *
 * One worker holds one model. ONNX Runtime's WebAssembly thread count is fixed when it first
 * starts, so the page starts a new worker to change model, provider or threads.
 */
import { PpdError } from '../errors.ts';
import { blobFolder, pickedFile, blobFile, type VersionedBlob } from '../format/blob-file.ts';
import { readGgufModel } from '../checkpoint/gguf-model.ts';
import { openModelFolder, type ModelDir } from '../checkpoint/model-folder.ts';
import type { Folder } from '../format/readable-file.ts';
import { newCache, prefill } from '../decode/autoregressive.ts';
import { startGeneration } from '../generate/request.ts';
import { modelFromFiles, type LoadedModel } from '../checkpoint/loaded-model.ts';
import { ACCURACY_FILE, lookupAlone, readPpdSetup } from '../ppd/adapter-folder.ts';
import { adapterPromptHead } from '../ppd/adapter.ts';
import { readAccuracyTableIn, type AccuracyTable } from '../ppd/accuracy.ts';
import { QUICK_FORWARDS, quickTreeChoice } from '../ppd/quick-calibration.ts';
import type { PpdSetup } from '../ppd/setup.ts';
import { widestTreeRows } from '../ppd/tree.ts';
import { cacheStorageGraphs, webRuntime, type OrtWeb } from '../runtime/ort-web.ts';
import type { BrowserManifest, FromWorker, GenerateRequest, LoadRequest, LogitsRequest, ModelInfo, ToWorker, TreesInfo } from './protocol.ts';

/** The worker's global scope, as far as ppd uses it (lib.webworker.d.ts is not loaded). */
const scope = self as unknown as {
  postMessage(message: FromWorker): void;
  onmessage: ((event: MessageEvent<ToWorker>) => void) | null;
};
const post = (message: FromWorker) => scope.postMessage(message);

interface Loaded {
  model: LoadedModel;
  ppd?: PpdSetup;
  /** The adapter's accuracy table, when its folder has one: the page then sizes its own trees. */
  accuracy?: AccuracyTable;
  /** The prompt-token setup, once decided (promptTokenSetup). */
  promptTokenSetup?: { setup: PpdSetup; trees: TreesInfo };
}

let loaded: Loaded | undefined;
let running: AbortController | undefined;

scope.onmessage = ({ data }) => {
  if (data.type === 'stop') running?.abort();
  else void (data.type === 'load' ? load(data) : data.type === 'generate' ? generate(data) : logits(data)).catch(report);
};

/** Bad input is one readable line; anything else is a bug and keeps its name. */
function report(error: unknown): void {
  const message = error instanceof PpdError ? error.message : error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  post({ type: 'error', message });
}

async function load(request: LoadRequest): Promise<void> {
  const start = performance.now();
  const { model: modelFiles, adapter, name, defaults } = await gather(request);
  let files: ModelDir | undefined;
  try {
    post({ type: 'progress', stage: 'reading the model', done: 0, total: 1 });
    files = modelFiles.gguf ? readGgufModel(blobFile(modelFiles.gguf.name, modelFiles.gguf.file)) : openModelFolder(modelFiles.folder!);
    // onnxruntime-web's builds: WebAssembly only (smallest), or WebGPU with WebAssembly beside it.
    const ort: OrtWeb = request.provider === 'webgpu' ? await import('onnxruntime-web/webgpu') : await import('onnxruntime-web/wasm');
    let graph: ModelInfo['graph'] = 'compiled';
    const runtime = webRuntime({
      ort,
      provider: request.provider,
      threads: request.threads,
      wasmPaths: request.wasmPaths,
      cache: await cacheStorageGraphs(),
      onStage: (stage) => {
        if (stage === 'cached') graph = 'cached';
        post({ type: 'progress', stage: STAGES[stage], done: 0, total: 1 });
      },
    });
    const model = await modelFromFiles(files, runtime, { needsTokenizer: true, promptHead: adapter && adapterPromptHead(adapter.folder) });
    const ppd = adapter && readPpdSetup(model.config, adapter.folder, { trees: adapter.trees, lookup: adapter.lookup });
    const accuracy = adapter?.folder.has(ACCURACY_FILE) ? readAccuracyTableIn(adapter.folder, ACCURACY_FILE) : undefined;
    loaded = { model, ppd, accuracy };
    const c = model.config;
    const info: ModelInfo = {
      name,
      summary: `${c.modelType}, ${c.numLayers} layers, hidden ${c.hiddenSize}, vocab ${c.vocabSize}`,
      runtime: runtime.description,
      graph,
      hasChatTemplate: model.tokenizer?.chatTemplate != null,
      ppd: ppd && { promptTokens: ppd.adapter.promptTokens, trees: adapter!.trees, lookup: ppd.lookup ?? defaults.lookup },
      loadSeconds: (performance.now() - start) / 1000,
    };
    post({ type: 'ready', model: info });
  } finally {
    files?.tensors.close();
  }
}

const STAGES = { compiling: 'compiling the graph (once; kept for the next visit)', cached: 'compiled graph found in the cache', opening: 'starting ONNX Runtime' };

interface Gathered {
  name: string;
  model: { folder?: Folder; gguf?: { name: string; file: VersionedBlob } };
  adapter?: { folder: Folder; trees: string; lookup: number };
  defaults: { lookup: number };
}

/** The model's (and adapter's) files, downloaded from the manifest or taken from what the user picked. */
async function gather(request: LoadRequest): Promise<Gathered> {
  const source = request.source;
  if (source.kind === 'gguf') return { name: source.file.name, model: { gguf: { name: source.file.name, file: pickedFile(source.file) } }, defaults: { lookup: 0 } };
  if (source.kind === 'folder') return pickedFolder(source.files);
  const manifest = (await (await fetchChecked(source.url)).json()) as BrowserManifest;
  const base = new URL(source.url, location.href);
  const modelBase = new URL(manifest.model.path, base);
  const adapterBase = manifest.adapter && new URL(manifest.adapter.path, base);
  const wanted = [
    ...manifest.model.files.map((f) => ({ url: new URL(f, modelBase), name: f, part: 'model' as const })),
    ...(manifest.adapter?.files ?? []).map((f) => ({ url: new URL(f, adapterBase), name: f, part: 'adapter' as const })),
  ];
  const headers: Record<string, string> = source.apiKey ? { authorization: `Bearer ${source.apiKey}` } : {};
  const fetched = await download(wanted.map((w) => w.url), headers);
  const model = new Map<string, VersionedBlob>();
  const adapter = new Map<string, VersionedBlob>();
  wanted.forEach((w, i) => (w.part === 'model' ? model : adapter).set(w.name, fetched[i]!));
  const name = manifest.model.name;
  const gguf = manifest.model.files.length === 1 && manifest.model.files[0]!.toLowerCase().endsWith('.gguf') ? manifest.model.files[0]! : undefined;
  return {
    name,
    model: gguf ? { gguf: { name: `${name}`, file: model.get(gguf)! } } : { folder: blobFolder(name, model) },
    adapter: manifest.adapter && { folder: blobFolder(`${name}/${manifest.adapter.path.replace(/\/$/, '')}`, adapter), trees: manifest.adapter.trees, lookup: manifest.adapter.lookup },
    defaults: { lookup: manifest.adapter?.lookup ?? 0 },
  };
}

/**
 * A picked folder: the model's files at its top level, and a PPD adapter in a `ppd/` subfolder
 * when there is one (the layout of ppd's models: models/ppd-base/ppd).
 */
function pickedFolder(files: File[]): Gathered {
  const top = (files[0]?.webkitRelativePath ?? '').split('/')[0] ?? 'model';
  const model = new Map<string, VersionedBlob>();
  const adapter = new Map<string, VersionedBlob>();
  for (const file of files) {
    const parts = file.webkitRelativePath.split('/').slice(1);
    if (parts.length === 1) model.set(parts[0]!, pickedFile(file));
    else if (parts[0] === 'ppd') adapter.set(parts.slice(1).join('/'), pickedFile(file));
  }
  const withAdapter = adapter.has('adapter_config.json') && adapter.has('trees.json');
  return {
    name: top,
    model: { folder: blobFolder(top, model) },
    adapter: withAdapter ? { folder: blobFolder(`${top}/ppd`, adapter), trees: 'trees.json', lookup: DEFAULT_PICKED_LOOKUP } : undefined,
    defaults: { lookup: DEFAULT_PICKED_LOOKUP },
  };
}

/** The page's default context lookup for picked adapters: the engine's default on Node (ppd/setup.ts). */
const DEFAULT_PICKED_LOOKUP = 8;

async function fetchChecked(url: URL | string, headers: Record<string, string> = {}): Promise<Response> {
  const response = await fetch(url, { headers });
  if (response.status === 401) throw new PpdError(`${url}: this server needs its API key (enter it above)`);
  if (!response.ok) throw new PpdError(`${url}: HTTP ${response.status} ${response.statusText}`);
  return response;
}

/** Downloads the files one after another, reporting the bytes received against their total. */
async function download(urls: URL[], headers: Record<string, string>): Promise<VersionedBlob[]> {
  const responses = await Promise.all(urls.map((u) => fetchChecked(u, headers)));
  const sizes = responses.map((r) => Number(r.headers.get('content-length') ?? 0));
  const total = sizes.reduce((a, b) => a + b, 0);
  let done = 0;
  const blobs: VersionedBlob[] = [];
  for (const [i, response] of responses.entries()) {
    const chunks: Uint8Array[] = [];
    const reader = response.body!.getReader();
    for (;;) {
      const { value, done: end } = await reader.read();
      if (end) break;
      chunks.push(value);
      done += value.length;
      post({ type: 'progress', stage: `downloading ${urls[i]!.pathname.split('/').pop()}`, done, total });
    }
    const version = response.headers.get('etag') ?? response.headers.get('last-modified') ?? '';
    blobs.push({ blob: new Blob(chunks as BlobPart[]), version });
  }
  return blobs;
}

async function logits(request: LogitsRequest): Promise<void> {
  if (!loaded) throw new PpdError('no model is loaded');
  const { model } = loaded.model;
  const last = await prefill(model, request.ids, newCache(model));
  post({ type: 'logits', logits: last });
}

async function generate(request: GenerateRequest): Promise<void> {
  if (!loaded) throw new PpdError('no model is loaded');
  if (running) throw new PpdError('a generation is already running');
  running = new AbortController();
  try {
    const promptTokens = request.ppd && request.promptTokens && loaded.ppd ? await promptTokenSetup(loaded) : undefined;
    const setup = loaded.ppd && (promptTokens ? { ...promptTokens.setup, lookup: request.lookup } : lookupAlone(loaded.ppd, request.lookup));
    const ppd = request.ppd ? setup : undefined;
    const model = request.ignoreEos ? { ...loaded.model, eosIds: [] } : loaded.model;
    const generation = startGeneration(model, {
      prompt: request.chat ? [{ role: 'user', content: request.prompt }] : request.prompt,
      maxTokens: request.maxTokens,
      sampling: { temperature: request.temperature, seed: request.seed },
      signal: running.signal,
      ppd,
    });
    for await (const piece of generation) post({ type: 'piece', text: piece.text, ids: piece.ids });
    const { text, ids, stats } = generation.result;
    post({ type: 'done', text, ids, stats, mode: ppd ? 'ppd' : 'plain', ...(promptTokens ? { trees: promptTokens.trees } : {}) });
  } finally {
    running = undefined;
  }
}

/**
 * The setup of PPD with prompt tokens, decided once per loaded model on its first use: where the
 * adapter has an accuracy table, trees sized for this page from its own forward latencies
 * (ppd/quick-calibration.ts; root-only trees, the context lookup alone, where no tree pays);
 * else the manifest's tree-set file as it is.
 */
async function promptTokenSetup(state: Loaded): Promise<{ setup: PpdSetup; trees: TreesInfo }> {
  if (state.promptTokenSetup) return state.promptTokenSetup;
  const ppd = state.ppd!;
  if (!state.accuracy) return (state.promptTokenSetup = { setup: ppd, trees: { source: 'file', rows: widestTreeRows(ppd.trees) } });
  const { promptTokens, virtualTokens, config } = ppd.adapter;
  const stage = "measuring this page's forward cost to size PPD's trees (once per model)";
  const total = QUICK_FORWARDS;
  let done = 0;
  post({ type: 'progress', stage, done, total });
  const choice = await quickTreeChoice(state.model.model, state.accuracy, { promptTokens, virtualTokens, attention: config.attention, accuracySource: ACCURACY_FILE }, () =>
    post({ type: 'progress', stage, done: ++done, total }),
  );
  const setup: PpdSetup = { ...ppd, trees: choice.trees, treesFile: undefined };
  return (state.promptTokenSetup = { setup, trees: { source: 'page', rows: widestTreeRows(choice.trees), fastest: { n: choice.fastest.n, speedup: choice.fastest.speedup } } });
}
