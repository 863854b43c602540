/**
 * ONNX Runtime in a browser: the Runtime (session.ts) a page gives the model layer, on
 * onnxruntime-web 1.30 (the ORT release of onnxruntime-node here, so the same graphs and contrib
 * ops behave the same). WebAssembly (SIMD; threads when the page is cross-origin isolated) or
 * WebGPU. Compiled graphs are kept in Cache Storage under a hash of the graph's identity, the
 * same identity the Node disk cache hashes (compile.ts), so a second visit skips compilation.
 *
 * The caller imports the onnxruntime-web build that fits the provider ('onnxruntime-web/wasm':
 * WebAssembly only, the smallest; 'onnxruntime-web/webgpu': WebGPU plus WebAssembly) and says
 * where ORT's .wasm/.mjs files are served. Runs in a worker or a page; the graph build itself is
 * synchronous, so a page should run it in a worker.
 */
import type * as Ort from 'onnxruntime-web';
import { memorySink } from '../graph/builder.ts';
import type { Feed, GraphSpec, ModelSession, Runtime } from './session.ts';

export type OrtWeb = typeof Ort;
export type ExecutionProvider = 'wasm' | 'webgpu';

/** The external-data name the model refers to; ORT is handed its bytes under this name. */
const DATA_FILE = 'model.onnx.data';

export interface WebRuntimeOptions {
  /** The onnxruntime-web module to run on (its build must include `provider`). */
  ort: OrtWeb;
  provider: ExecutionProvider;
  /** WebAssembly threads: more than 1 only works in a cross-origin isolated page. */
  threads: number;
  /** URL prefix under which ORT's ort-wasm-simd-threaded*.wasm/.mjs files are served. */
  wasmPaths: string;
  /** Where compiled graphs are kept; absent: every load compiles. */
  cache?: GraphCache;
  /** Told when a graph is being compiled (slow, once) or read from the cache, then opened. */
  onStage?: (stage: 'compiling' | 'cached' | 'opening') => void;
}

/** Compiled graphs by key: the serialised model and its external data. */
export interface GraphCache {
  get(key: string): Promise<CompiledGraph | undefined>;
  put(key: string, graph: CompiledGraph): Promise<void>;
}

export interface CompiledGraph {
  model: Uint8Array;
  data: Uint8Array;
}

export function webRuntime(options: WebRuntimeOptions): Runtime {
  const { ort, provider, threads } = options;
  ort.env.wasm.numThreads = threads;
  ort.env.wasm.wasmPaths = options.wasmPaths;
  ort.env.wasm.proxy = false; // ppd already runs in a worker
  return {
    description: `onnxruntime-web ${ort.env.versions.web ?? ''}, ${provider}${provider === 'wasm' ? `, ${threads} thread${threads === 1 ? '' : 's'}` : ''}`,
    async openGraph(spec: GraphSpec): Promise<ModelSession> {
      const graph = await compiled(spec, options);
      options.onStage?.('opening');
      const session = await ort.InferenceSession.create(graph.model, {
        executionProviders: [provider],
        graphOptimizationLevel: 'all',
        externalData: [{ path: DATA_FILE, data: graph.data }],
        // Between runs the worker samples, detokenises and posts the step to the page, whose
        // main thread then updates the DOM; a pool thread spinning for work meanwhile takes the
        // core that needs. Not spinning: 2-thread WebAssembly plain decoding of the bundled model
        // went from 330-345 to 357-378 tokens/s here (one 64-token prompt, 10 runs each, twice).
        extra: { session: { intra_op: { allow_spinning: '0' } } },
      });
      return webSession(ort, session);
    },
  };
}

/** The graph from the cache, or built now (and put in the cache). */
async function compiled(spec: GraphSpec, options: WebRuntimeOptions): Promise<CompiledGraph> {
  const key = await sha256Hex(spec.identity);
  const cached = await options.cache?.get(key);
  if (cached) {
    options.onStage?.('cached');
    return cached;
  }
  options.onStage?.('compiling');
  const sink = memorySink(DATA_FILE);
  const model = spec.build(sink);
  const graph = { model, data: sink.bytes() };
  await options.cache?.put(key, graph);
  return graph;
}

function webSession(ort: OrtWeb, session: Ort.InferenceSession): ModelSession {
  return {
    async run(feeds: Record<string, Feed>): Promise<Record<string, Float32Array>> {
      const tensors: Record<string, Ort.Tensor> = {};
      for (const [name, feed] of Object.entries(feeds)) tensors[name] = new ort.Tensor(feed.type, feed.data, feed.dims);
      const out = await session.run(tensors);
      const result: Record<string, Float32Array> = {};
      for (const [name, tensor] of Object.entries(out)) {
        if (tensor.type !== 'float32') throw new Error(`graph output ${name} is ${tensor.type}, expected float32`);
        result[name] = tensor.data as Float32Array;
      }
      return result;
    },
    release: () => session.release(),
  };
}

/** First 32 hex digits of SHA-256, as the Node cache names its folders. */
async function sha256Hex(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('').slice(0, 32);
}

/**
 * Compiled graphs in the browser's Cache Storage (one entry for the model, one for its data,
 * the model written last so a half-stored graph is never found). Undefined where the page has
 * no Cache Storage (an insecure context). A full quota only means the graph is not kept.
 */
export async function cacheStorageGraphs(name = 'ppd-graphs'): Promise<GraphCache | undefined> {
  if (typeof caches === 'undefined') return undefined;
  const cache = await caches.open(name);
  const url = (key: string, file: string) => `/${name}/${key}/${file}`;
  return {
    async get(key) {
      const model = await cache.match(url(key, 'model.onnx'));
      const data = model && (await cache.match(url(key, DATA_FILE)));
      if (!model || !data) return undefined;
      return { model: new Uint8Array(await model.arrayBuffer()), data: new Uint8Array(await data.arrayBuffer()) };
    },
    async put(key, graph) {
      try {
        await cache.put(url(key, DATA_FILE), new Response(graph.data as Uint8Array<ArrayBuffer>));
        await cache.put(url(key, 'model.onnx'), new Response(graph.model as Uint8Array<ArrayBuffer>));
      } catch (error) {
        console.warn(`ppd: compiled graph not cached (${(error as Error).message})`);
      }
    },
  };
}
