/**
 * ppd in the browser, served at /browser/: the page and its worker (bundled from src/browser/
 * by esbuild at the first request, kept in memory), onnxruntime-web's WebAssembly files, and a
 * manifest with the served model's (and adapter's) files, which the page downloads and runs
 * itself. Nothing under /browser/ generates on the server.
 *
 * Every response here carries COOP/COEP headers, so the page is cross-origin isolated and
 * WebAssembly may use threads. With an API key, the model and adapter files need it as /v1 does
 * (the page asks for it); the page itself and the manifest do not.
 */
import { createReadStream, existsSync, statSync } from 'node:fs';
import { basename, join, relative, resolve, sep } from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { bundlePage, contentType, ORT_FILES, ortFilePath, type PageFile } from '../browser/build.ts';
import type { BrowserManifest } from '../browser/protocol.ts';
import { readJsonObject } from '../format/text-file.ts';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS } from '../ppd/adapter.ts';
import type { PpdSetup } from '../ppd/setup.ts';

export interface BrowserPageOptions {
  /** The served model: a Hugging Face folder or a .gguf file. */
  modelDir: string;
  /** The PPD adapter folder and the setup the server decodes with (its tree set and lookup). */
  adapter?: { dir: string; setup: PpdSetup };
  /** When set, the model and adapter files need `Authorization: Bearer <key>`. */
  requireKey?: (request: FastifyRequest) => Promise<void>;
}

/** A model folder's files the page may need (whichever exist). */
const MODEL_FILES = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'chat_template.jinja', 'model.safetensors', 'model.safetensors.index.json'];

/** COOP + COEP make the page cross-origin isolated (SharedArrayBuffer, WebAssembly threads). */
export const ISOLATION_HEADERS = {
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-embedder-policy': 'require-corp',
  'cross-origin-resource-policy': 'same-origin',
} as const;

const PAGE_HEADERS = {
  ...ISOLATION_HEADERS,
  // WebAssembly compilation needs 'wasm-unsafe-eval'; workers and ORT's files come from here.
  'content-security-policy': "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'cache-control': 'no-cache',
};

export function registerBrowserPage(app: FastifyInstance, options: BrowserPageOptions): void {
  const served = servedFiles(options);
  const manifest = manifestOf(options, served);
  let bundle: Promise<Map<string, PageFile>> | undefined;
  const page = () => (bundle ??= bundlePage());

  app.get('/browser', async (_request, reply) => reply.redirect('/browser/'));
  app.get('/browser/', async (_request, reply) => sendPageFile(reply, (await page()).get('index.html')!));
  app.get('/browser/manifest.json', async (_request, reply) =>
    reply.headers(PAGE_HEADERS).type('application/json; charset=utf-8').send(manifest),
  );
  app.get<{ Params: { file: string } }>('/browser/:file', async (request, reply) => {
    const file = (await page()).get(request.params.file);
    if (!file) return reply.callNotFound();
    return sendPageFile(reply, file);
  });
  app.get<{ Params: { file: string } }>('/browser/ort/:file', async (request, reply) => {
    const name = ORT_FILES.find((f) => f === request.params.file);
    if (!name) return reply.callNotFound();
    return sendFile(request, reply, ortFilePath(name), contentType(name), 'public, max-age=86400');
  });
  for (const part of ['model', 'adapter'] as const) {
    app.get<{ Params: { '*': string } }>(`/browser/${part}/*`, { onRequest: options.requireKey ?? (async () => {}) }, async (request, reply) => {
      const path = served[part].get(request.params['*']);
      if (!path) return reply.callNotFound();
      return sendFile(request, reply, path, 'application/octet-stream', 'no-cache');
    });
  }
}

function sendPageFile(reply: FastifyReply, file: PageFile) {
  return reply.headers(PAGE_HEADERS).type(file.type).send(Buffer.from(file.body.buffer, file.body.byteOffset, file.body.length));
}

/** A file from disk, revalidated by its size and modification time (304 when unchanged). */
function sendFile(request: FastifyRequest, reply: FastifyReply, path: string, type: string, cacheControl: string) {
  const { size, mtimeMs, mtime } = statSync(path);
  const etag = `"${size.toString(16)}-${Math.floor(mtimeMs).toString(16)}"`;
  reply.headers({ ...ISOLATION_HEADERS, etag, 'last-modified': mtime.toUTCString(), 'cache-control': cacheControl, 'x-content-type-options': 'nosniff' });
  if (request.headers['if-none-match'] === etag) return reply.status(304).send();
  return reply.type(type).header('content-length', size).send(createReadStream(path));
}

/** The files the page may download, by the name it asks for: model files and adapter files. */
function servedFiles(options: BrowserPageOptions): { model: Map<string, string>; adapter: Map<string, string> } {
  const model = new Map<string, string>();
  const dir = options.modelDir;
  if (!statSync(dir).isDirectory()) model.set(basename(dir), resolve(dir));
  else {
    for (const name of MODEL_FILES) if (existsSync(join(dir, name))) model.set(name, resolve(dir, name));
    const index = join(dir, 'model.safetensors.index.json');
    if (existsSync(index)) {
      // The server loaded this checkpoint already, so its index is known to be well formed.
      const shards = new Set(Object.values(readJsonObject(index).weight_map as Record<string, string>));
      for (const shard of shards) model.set(shard, resolve(dir, shard));
    }
  }
  const adapter = new Map<string, string>();
  if (options.adapter) {
    for (const name of [ADAPTER_CONFIG, ADAPTER_WEIGHTS]) adapter.set(name, resolve(options.adapter.dir, name));
    adapter.set(treesName(options.adapter), resolve(options.adapter.setup.treesFile!));
  }
  return { model, adapter };
}

/** The tree-set file's name under adapter/: its path in the adapter folder, or its own name when it lies elsewhere. */
function treesName(adapter: NonNullable<BrowserPageOptions['adapter']>): string {
  const path = relative(resolve(adapter.dir), resolve(adapter.setup.treesFile!));
  return path.startsWith('..') ? basename(path) : path.split(sep).join('/');
}

function manifestOf(options: BrowserPageOptions, served: ReturnType<typeof servedFiles>): BrowserManifest {
  return {
    schema: 'ppd.browser-manifest/1',
    auth: options.requireKey !== undefined,
    model: { name: basename(resolve(options.modelDir)), path: 'model/', files: [...served.model.keys()] },
    adapter: options.adapter && {
      path: 'adapter/',
      files: [...served.adapter.keys()],
      trees: treesName(options.adapter),
      lookup: options.adapter.setup.lookup ?? 0,
    },
  };
}
