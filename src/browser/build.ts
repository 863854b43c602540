/**
 * The browser page as files: page.ts, worker.ts (and through it the engine's own modules from
 * src/) and page.css bundled by esbuild, index.html as written, and the onnxruntime-web
 * WebAssembly files the worker loads. `ppd serve` builds it in memory (server/browser.ts);
 * `npm run build:browser` writes it out with a model (scripts/build-browser.ts).
 *
 * The bundle must not reach Node-only modules: a `node:` import anywhere below page.ts or
 * worker.ts fails the build here, naming the importer.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, join, relative, resolve, sep } from 'node:path';
import { build } from 'esbuild';
import { readJsonObject } from '../format/text-file.ts';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS } from '../ppd/adapter.ts';
import { ACCURACY_FILE } from '../ppd/adapter-folder.ts';
import type { BrowserManifest } from './protocol.ts';

const SOURCE = new URL('./', import.meta.url);

/**
 * onnxruntime-web's runtime files the two builds the worker imports need: 'onnxruntime-web/wasm'
 * (WebAssembly) and 'onnxruntime-web/webgpu' (WebGPU, asyncify build). Served under ort/.
 */
export const ORT_FILES = [
  'ort-wasm-simd-threaded.mjs',
  'ort-wasm-simd-threaded.wasm',
  'ort-wasm-simd-threaded.asyncify.mjs',
  'ort-wasm-simd-threaded.asyncify.wasm',
] as const;

/** Where an ORT runtime file is installed. */
export function ortFilePath(name: (typeof ORT_FILES)[number]): string {
  return createRequire(import.meta.url).resolve(`onnxruntime-web/${name}`);
}

export interface PageFile {
  body: Uint8Array;
  type: string;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
};

/** The content type a page file is served with (by its extension). */
export function contentType(name: string): string {
  const dot = name.lastIndexOf('.');
  return TYPES[name.slice(dot)] ?? 'application/octet-stream';
}

/** The page's own files by name (index.html, page.js, worker.js, shared chunks, page.css); not ORT's, not the model. */
export async function bundlePage(): Promise<Map<string, PageFile>> {
  const result = await build({
    entryPoints: [
      { in: new URL('page.ts', SOURCE).pathname, out: 'page' },
      { in: new URL('worker.ts', SOURCE).pathname, out: 'worker' },
      { in: new URL('page.css', SOURCE).pathname, out: 'page' },
    ],
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'browser',
    target: ['es2022'],
    // onnxruntime-web's builds that load their .wasm/.mjs from env.wasm.wasmPaths (ort/)
    // instead of embedding them: the worker picks one build per provider.
    conditions: ['onnxruntime-web-use-extern-wasm'],
    minify: true,
    legalComments: 'none',
    outdir: '/',
    write: false,
    logLevel: 'silent',
  });
  const files = new Map<string, PageFile>();
  for (const out of result.outputFiles) {
    const name = out.path.slice(1);
    files.set(name, { body: out.contents, type: contentType(name) });
  }
  files.set('index.html', { body: readFileSync(new URL('index.html', SOURCE)), type: contentType('index.html') });
  return files;
}

/** A model folder's files the page may need (whichever exist). */
const MODEL_FILES = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'chat_template.jinja', 'model.safetensors', 'model.safetensors.index.json'];

/** The model the page loads by default, and the PPD adapter it decodes with. */
export interface PageModelOptions {
  /** A Hugging Face model folder or a .gguf file. */
  modelDir: string;
  adapter?: { dir: string; treesFile: string; lookup: number };
  /** The model and adapter files need the server's API key. */
  auth?: boolean;
}

/**
 * The page's manifest and the files it lists, by the name the page asks for under model/ and
 * adapter/ (values: paths on disk). The tree-set file keeps its path inside the adapter folder,
 * or its own name when it lies elsewhere.
 */
export function pageModel(options: PageModelOptions): { manifest: BrowserManifest; files: { model: Map<string, string>; adapter: Map<string, string> } } {
  const model = new Map<string, string>();
  const dir = options.modelDir;
  if (!statSync(dir).isDirectory()) model.set(basename(dir), resolve(dir));
  else {
    for (const name of MODEL_FILES) if (existsSync(join(dir, name))) model.set(name, resolve(dir, name));
    const index = join(dir, 'model.safetensors.index.json');
    // The shards the index names (a checkpoint that loaded has a well-formed index).
    if (existsSync(index)) for (const shard of new Set(Object.values(readJsonObject(index).weight_map as Record<string, string>))) model.set(shard, resolve(dir, shard));
  }
  const adapter = new Map<string, string>();
  let trees = '';
  if (options.adapter) {
    for (const name of [ADAPTER_CONFIG, ADAPTER_WEIGHTS]) adapter.set(name, resolve(options.adapter.dir, name));
    // The accuracy table lets the page size its own trees (ppd/quick-calibration.ts).
    if (existsSync(join(options.adapter.dir, ACCURACY_FILE))) adapter.set(ACCURACY_FILE, resolve(options.adapter.dir, ACCURACY_FILE));
    const inside = relative(resolve(options.adapter.dir), resolve(options.adapter.treesFile));
    trees = inside.startsWith('..') ? basename(inside) : inside.split(sep).join('/');
    adapter.set(trees, resolve(options.adapter.treesFile));
  }
  const manifest: BrowserManifest = {
    schema: 'ppd.browser-manifest/1',
    auth: options.auth ?? false,
    model: { name: basename(resolve(dir)), path: 'model/', files: [...model.keys()] },
    adapter: options.adapter && { path: 'adapter/', files: [...adapter.keys()], trees, lookup: options.adapter.lookup },
  };
  return { manifest, files: { model, adapter } };
}
