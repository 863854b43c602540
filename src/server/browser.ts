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
import { createReadStream, statSync } from 'node:fs';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { bundlePage, contentType, ORT_FILES, ortFilePath, pageModel, type PageFile, type PageModelOptions } from '../browser/build.ts';

export interface BrowserPageOptions extends Omit<PageModelOptions, 'auth'> {
  /** When set, the model and adapter files need `Authorization: Bearer <key>`. */
  requireKey?: (request: FastifyRequest) => Promise<void>;
}

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
  const { manifest, files: served } = pageModel({ ...options, auth: options.requireKey !== undefined });
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
