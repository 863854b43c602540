/**
 * The browser page as files: page.ts, worker.ts (and through it the engine's own modules from
 * src/) and page.css bundled by esbuild, index.html as written, and the onnxruntime-web
 * WebAssembly files the worker loads. `ppd serve` builds it in memory (server/browser.ts);
 * `npm run build:browser` writes it out with a model (scripts/build-browser.ts).
 *
 * The bundle must not reach Node-only modules: a `node:` import anywhere below page.ts or
 * worker.ts fails the build here, naming the importer.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { build } from 'esbuild';

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
