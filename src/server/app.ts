/**
 * The HTTP server (fastify): OpenAI-style completions and chat completions, streamed as
 * server-sent events or whole; the model list, health, Prometheus metrics, the chat page, and
 * the browser page that runs the model itself (browser.ts).
 *
 * Every request is first checked for a Host header naming this server (hosts.ts: DNS
 * rebinding). One that generates then goes: auth → body (size limit, JSON) → schema → prompt
 * encoded on the tokenizer thread (too long for the context → 400, found before encoding when it
 * is far too long) → the queue (full → 429) → decoding. A timer and the
 * client's connection share one AbortSignal into the generation: a client that goes away, or a
 * request past its time limit, stops at the end of the current decoding step and gives its slot
 * (and its KV cache, which lives only in the generation) back. Every failure is an OpenAI error
 * object; what is not the client's fault is a 500 and goes to `onBug`, and never ends the process.
 *
 * Not here: the wire format (openai.ts), admission (queue.ts), metrics (metrics.ts), process
 * lifetime and signals (cli/serve.ts).
 */
import { readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { basename, resolve } from 'node:path';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { InputError } from '../errors.ts';
import type { Generation } from '../generate/generate.ts';
import { latencyCurve, measureLatency, type LatencyCurve } from '../decode/latency.ts';
import { generationFromIds } from '../generate/request.ts';
import { BatchScheduler } from '../generate/scheduler.ts';
import type { LlamaModel } from '../model/llama-model.ts';
import type { LoadedModel } from '../checkpoint/load.ts';
import type { PpdSetup } from '../ppd/setup.ts';
import { requireTokenizer } from '../checkpoint/load.ts';
import { TokenizerThread } from '../tokenizer/thread.ts';
import { bearerCheck } from './auth.ts';
import { hostCheck, hostName } from './hosts.ts';
import { registerBrowserPage } from './browser.ts';
import { ServerMetrics } from './metrics.ts';
import {
  ApiError,
  chatSchema,
  completionSchema,
  finalChunk,
  newResponseHeader,
  parseBody,
  responseBody,
  roleChunk,
  sseEvent,
  stepChunk,
  toTextRequest,
  usageChunk,
  type ChatBody,
  type CompletionBody,
  type DecodingMode,
  type Endpoint,
  type ResponseHeader,
} from './openai.ts';
import { QueueFullError, RequestQueue } from './queue.ts';

export interface ServerOptions {
  loaded: LoadedModel;
  /** With an adapter, requests decode with PPD unless they say `ppd: false`. */
  ppd?: PpdSetup;
  /** The adapter's folder: the browser page (/browser/) downloads it to decode with PPD itself. */
  adapterDir?: string;
  /** The name clients give as `model` (default: the model folder's name). */
  modelId?: string;
  /** When set, /v1/* and /metrics need `Authorization: Bearer <apiKey>` (visible ASCII, no spaces). */
  apiKey?: string;
  /**
   * Host names requests may be addressed to besides IP addresses and localhost (hosts.ts); `*`
   * allows any. Others get 403.
   */
  allowedHosts?: readonly string[];
  /**
   * Decode concurrent generations through shared forwards (generate/scheduler.ts; default true).
   * False: each generation runs its own forwards, `concurrency` of them at once.
   */
  batching?: boolean;
  /** L(n) for the batch's row budget; default: measured when the server starts (`measureServerLatency`). */
  latency?: LatencyCurve;
  /**
   * Generations running at once: with batching, the sequences of one batch (default 8); without,
   * generations decoding side by side (default 1: one already uses every core).
   */
  concurrency?: number;
  /** Requests that may wait for a slot; more get 429 (default 8). */
  maxWaiting?: number;
  /** A request's limit from arrival to its last byte, queueing included (default 600). */
  timeoutSeconds?: number;
  /** Largest request body (default 1 MiB). */
  bodyLimitBytes?: number;
  /** New tokens when a request gives no max_tokens (default 256, capped by the context). */
  defaultMaxTokens?: number;
  /** Errors that are the server's fault (500s); default: printed with their stack to stderr. */
  onBug?: (error: unknown) => void;
}

export const SERVER_DEFAULTS = { batching: true, maxWaiting: 8, timeoutSeconds: 600, bodyLimitBytes: 1 << 20, defaultMaxTokens: 256 } as const;
/** Sequences in one batch unless told (--concurrency); one at a time without batching. */
export const DEFAULT_BATCH_SEQUENCES = 8;

/**
 * L(n) as the server measures it when it starts without one: one forward of n rows after a cache
 * of 64 rows (or a quarter of a short context), n from 1 to 64, one round to warm up and the
 * median of three. A few dozen forwards: a fraction of a second for the bundled model, seconds
 * for a billion parameters.
 */
export async function measureServerLatency(model: LlamaModel): Promise<LatencyCurve> {
  const context = model.config.maxPositionEmbeddings;
  const past = Math.min(64, Math.floor(context / 4));
  const grid = [1, 2, 4, 8, 16, 32, 64].filter((n) => past + n <= context);
  return latencyCurve(await measureLatency(model, { grid, contexts: [past], warmupRounds: 1, repeats: 3 }));
}

/** Longest time a client may take to send its request (headers and body). */
const RECEIVE_TIMEOUT_MS = 30_000;

export function buildServer(options: ServerOptions): FastifyInstance {
  const { loaded } = options;
  const settings = { ...SERVER_DEFAULTS, ...definedOnly(options) };
  const modelId = options.modelId ?? basename(resolve(loaded.dir));
  const limits = { contextLength: loaded.config.maxPositionEmbeddings, vocabSize: loaded.config.vocabSize };
  const schemas = { completion: completionSchema(limits), chat: chatSchema(limits) };
  const defaults = { maxTokens: Math.min(settings.defaultMaxTokens, limits.contextLength) };
  const queue = new RequestQueue(settings.concurrency ?? (settings.batching ? DEFAULT_BATCH_SEQUENCES : 1), settings.maxWaiting);
  const metrics = new ServerMetrics(queue);
  // Built when the server is ready: its row budget needs L(n), measured then unless given.
  let batch: BatchScheduler | undefined;
  const onBug = options.onBug ?? ((error: unknown) => console.error(error));
  const keyIsValid = options.apiKey === undefined ? undefined : bearerCheck(options.apiKey);
  const hostIsServed = hostCheck(options.allowedHosts);
  const local = requireTokenizer(loaded);
  const tokenizer = new TokenizerThread(local.source, { local, onEncode: (where) => metrics.promptEncoded(where) });

  // return503OnClosing off: requests that arrive while closing are answered below, as OpenAI
  // error objects (and readiness as not ready), instead of with fastify's own 503 body.
  const app = Fastify({ bodyLimit: settings.bodyLimitBytes, requestTimeout: RECEIVE_TIMEOUT_MS, logger: false, return503OnClosing: false });
  app.removeContentTypeParser('text/plain'); // bodies are JSON only: anything else is 415

  // Closing, node stops listening and drops the connections idle at that moment; those that
  // finish a response later would linger as keep-alive until their timeout, so drop them too.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  // listen() (and ready()) resolve once the tokenizer thread runs, so no request waits for it.
  app.addHook('onReady', async () => {
    await tokenizer.start();
    if (settings.batching) {
      const latency = options.latency ?? (await measureServerLatency(loaded.model));
      batch = new BatchScheduler(loaded.model, { latency, onForward: (step) => metrics.forward(step) });
    }
  });
  app.addHook('onClose', () => tokenizer.close());

  app.addHook('onRequest', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    reply.raw.once('close', () => {
      metrics.request(route, reply.raw.writableFinished ? reply.raw.statusCode : 499);
      if (closing) setImmediate(() => app.server.closeIdleConnections());
    });
    if (closing && route !== '/health' && route !== '/health/ready') {
      reply.header('connection', 'close');
      throw new ApiError(503, 'this server is shutting down; send the request again (to another replica)', 'server_error', null, 'shutting_down');
    }
    const host = request.headers.host;
    if (!hostIsServed(host)) {
      const name = hostName(host ?? '') ?? host;
      throw new ApiError(403, `this server does not answer requests for host ${JSON.stringify(name)} (DNS-rebinding defence); start it with --allowed-hosts ${name} to allow it`, 'invalid_request_error', null, 'host_not_allowed');
    }
  });

  const requireKey = async (request: FastifyRequest) => {
    if (keyIsValid && !keyIsValid(request.headers.authorization)) {
      throw new ApiError(401, 'missing or wrong API key: send "Authorization: Bearer <key>"', 'authentication_error', null, 'invalid_api_key');
    }
  };

  app.setErrorHandler((error, _request, reply) => {
    const api = toApiError(error);
    if (api.status === 500) onBug(error);
    if (api.status === 401) reply.header('www-authenticate', 'Bearer');
    return reply.status(api.status).send(api.body);
  });

  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send(new ApiError(404, `no route ${request.method} ${request.url.split('?')[0]}`, 'not_found_error', null, 'not_found').body),
  );

  // --- Generation. ---------------------------------------------------------------------------

  function decodingMode(requested: boolean | null | undefined): DecodingMode {
    if (requested === true && !options.ppd) throw new ApiError(400, 'this server has no PPD adapter (start it with --ppd DIR); send ppd: false or leave it out', 'invalid_request_error', 'ppd', 'ppd_unavailable');
    return options.ppd && requested !== false ? 'ppd' : 'plain';
  }

  function checkModel(model: string | undefined): void {
    if (model !== undefined && model !== modelId) {
      throw new ApiError(404, `model ${JSON.stringify(model)} is not served here; this server serves ${JSON.stringify(modelId)}`, 'not_found_error', 'model', 'model_not_found');
    }
  }

  async function generate(endpoint: Endpoint, body: CompletionBody | ChatBody, reply: FastifyReply): Promise<object | undefined> {
    checkModel(body.model);
    const mode = decodingMode(body.ppd);
    const cancel = new Cancellation(reply.raw, settings.timeoutSeconds);
    try {
      const { prompt, ...request } = toTextRequest(body, defaults);
      let ids;
      try {
        ids = await tokenizer.encodePrompt(prompt, { contextLength: limits.contextLength }, cancel.signal);
      } catch (error) {
        if (cancel.signal.aborted) return cancelled(cancel, reply);
        throw error;
      }
      const generation = generationFromIds(loaded, ids, { ...request, ppd: mode === 'ppd' ? options.ppd : undefined, signal: cancel.signal, batch });
      let release;
      try {
        release = await queue.acquire(cancel.signal);
      } catch (error) {
        if (error instanceof QueueFullError) throw new ApiError(429, error.message, 'rate_limit_error', null, 'queue_full');
        return cancelled(cancel, reply);
      }
      try {
        const header = newResponseHeader(endpoint, modelId);
        if (body.stream) {
          await stream(reply, generation, { endpoint, header, mode, cancel, includeUsage: body.stream_options?.include_usage === true });
          return undefined;
        }
        const result = await generation.complete();
        metrics.generation(mode, result);
        if (result.stats.finishReason === 'aborted') return cancelled(cancel, reply);
        return responseBody(endpoint, header, mode, result);
      } finally {
        release();
      }
    } finally {
      cancel.dispose();
    }
  }

  /** Nothing to send to a client that left; a timed-out client gets a 504. */
  function cancelled(cancel: Cancellation, reply: FastifyReply): undefined {
    if (cancel.reason === 'timeout') throw timeoutError(settings.timeoutSeconds);
    reply.hijack();
    reply.raw.destroy();
    return undefined;
  }

  interface StreamContext {
    endpoint: Endpoint;
    header: ResponseHeader;
    mode: DecodingMode;
    cancel: Cancellation;
    includeUsage: boolean;
  }

  /** Writes the generation as server-sent events; never throws (the headers are already sent). */
  async function stream(reply: FastifyReply, generation: Generation, c: StreamContext): Promise<void> {
    reply.hijack();
    const res = reply.raw;
    res.on('error', () => {}); // a reset connection surfaces through 'close'; nothing to do here
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' });
    const send = (data: object | '[DONE]') => write(res, sseEvent(data), c.cancel.signal);
    try {
      if (c.endpoint === 'chat') await send(roleChunk(c.header));
      for await (const piece of generation) {
        if (piece.text !== '' || piece.ids.length > 0) await send(stepChunk(c.endpoint, c.header, piece.text, piece.ids.length));
      }
      const result = generation.result;
      metrics.generation(c.mode, result);
      if (result.stats.finishReason === 'aborted' && c.cancel.reason === 'timeout') {
        await send(timeoutError(settings.timeoutSeconds).body);
      } else {
        await send(finalChunk(c.endpoint, c.header, c.mode, result));
        if (c.includeUsage) await send(usageChunk(c.endpoint, c.header, result));
      }
    } catch (error) {
      const api = toApiError(error);
      if (api.status === 500) onBug(error);
      await send(api.body);
    }
    await send('[DONE]');
    res.end();
    // A client that stopped reading would keep its connection (and our buffer) forever.
    if (c.cancel.reason === 'timeout' && res.writableNeedDrain) res.destroy();
  }

  // --- Routes. -------------------------------------------------------------------------------

  app.post('/v1/completions', { onRequest: requireKey }, (request, reply) => generate('completion', parseBody(schemas.completion, request.body), reply));
  app.post('/v1/chat/completions', { onRequest: requireKey }, (request, reply) => generate('chat', parseBody(schemas.chat, request.body), reply));

  const modelCard = () => ({
    id: modelId,
    object: 'model',
    created: Math.floor(Date.now() / 1000),
    owned_by: 'ppd',
    context_length: limits.contextLength,
    ppd: options.ppd !== undefined,
  });
  app.get('/v1/models', { onRequest: requireKey }, async () => ({ object: 'list', data: [modelCard()] }));
  app.get<{ Params: { id: string } }>('/v1/models/:id', { onRequest: requireKey }, async (request) => {
    checkModel(request.params.id);
    return modelCard();
  });

  // Liveness and readiness, for orchestrators and load balancers (deploy/README.md). /health
  // answers 200 while the process serves HTTP at all; /health/ready answers 200 while the server
  // takes new requests and 503 once it is closing (SIGTERM), so a balancer stops sending it
  // work while the requests it has finish. A full queue does not make it unready: the queue's
  // 429 already says "retry", and a balancer that caps connections per replica (HAProxy's
  // maxconn) never fills it.
  const healthBody = () => ({
    model: modelId,
    ppd: options.ppd !== undefined,
    auth: keyIsValid !== undefined,
    batching: settings.batching,
    queue: { active: queue.active, waiting: queue.depth, concurrency: queue.concurrency, max_waiting: queue.maxWaiting },
  });
  app.get('/health', async () => ({ status: 'ok', ...healthBody() }));
  app.get('/health/ready', async (_request, reply) => reply.status(closing ? 503 : 200).send({ status: closing ? 'closing' : 'ready', ...healthBody() }));

  app.get('/metrics', { onRequest: requireKey }, async (_request, reply) => reply.type(metrics.contentType).send(await metrics.text()));

  for (const [path, file] of PAGE) app.get(path, async (_request, reply) => reply.headers(PAGE_HEADERS).type(file.type).send(file.body));

  registerBrowserPage(app, {
    modelDir: loaded.dir,
    // The page decodes with the server's own tree set and context lookup.
    adapter:
      options.ppd?.treesFile !== undefined && options.adapterDir !== undefined
        ? { dir: options.adapterDir, treesFile: options.ppd.treesFile, lookup: options.ppd.lookup ?? 0 }
        : undefined,
    requireKey: keyIsValid ? requireKey : undefined,
  });

  return app;
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/** Options given as undefined fall back to the defaults instead of overriding them. */
function definedOnly<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** One request's cancellation: its time limit and its client's connection, as one AbortSignal. */
class Cancellation {
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout;
  private readonly onClose: () => void;
  reason: 'client' | 'timeout' | undefined;

  constructor(
    private readonly res: ServerResponse,
    timeoutSeconds: number,
  ) {
    // setTimeout takes at most 2^31 - 1 ms (about 24 days); beyond that it would fire at once.
    this.timer = setTimeout(() => this.cancel('timeout'), Math.min(timeoutSeconds * 1000, 2 ** 31 - 1));
    this.onClose = () => {
      if (!res.writableFinished) this.cancel('client');
    };
    res.once('close', this.onClose);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  private cancel(reason: 'client' | 'timeout'): void {
    if (this.reason) return;
    this.reason = reason;
    this.controller.abort(new Error(reason === 'timeout' ? 'request timed out' : 'client disconnected'));
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.res.off('close', this.onClose);
  }
}

const timeoutError = (seconds: number) => new ApiError(504, `the request took longer than this server's limit of ${seconds} s`, 'timeout_error', null, 'timeout');

/**
 * Writes to a response, waiting while its buffer is full (so a slow reader slows its own
 * generation), but never past the request's cancellation; a closed response swallows the write.
 */
function write(res: ServerResponse, text: string, signal: AbortSignal): Promise<void> {
  if (res.destroyed || res.writableEnded) return Promise.resolve();
  if (res.write(text) || signal.aborted) return Promise.resolve();
  return new Promise((done) => {
    const settle = () => {
      res.off('drain', settle);
      res.off('close', settle);
      signal.removeEventListener('abort', settle);
      done();
    };
    res.on('drain', settle);
    res.on('close', settle);
    signal.addEventListener('abort', settle, { once: true });
  });
}

/** Any error as what the client sees: its own mistakes as 4xx with the reason, the rest as 500. */
function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  if (error instanceof InputError) {
    const code = /context is \d+/.test(error.message) ? 'context_length_exceeded' : 'invalid_value';
    return new ApiError(400, error.message, 'invalid_request_error', null, code);
  }
  const status = (error as { statusCode?: unknown }).statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) return bodyError(error as Error & { code?: string }, status);
  return new ApiError(500, 'internal server error (reported in the server log)', 'server_error', null, 'internal_error');
}

/** fastify's errors about the body (size, type, JSON), in the server's words and codes. */
function bodyError(error: Error & { code?: string }, status: number): ApiError {
  const reasons: Record<string, [string, string]> = {
    FST_ERR_CTP_INVALID_JSON_BODY: ['the body is not valid JSON', 'invalid_json'],
    FST_ERR_CTP_BODY_TOO_LARGE: ['the request body is larger than this server accepts', 'body_too_large'],
    FST_ERR_CTP_INVALID_MEDIA_TYPE: ['the body must be JSON (Content-Type: application/json)', 'unsupported_media_type'],
    FST_ERR_CTP_EMPTY_JSON_BODY: ['the body is empty; send a JSON object', 'empty_body'],
  };
  const [message, code] = reasons[error.code ?? ''] ?? [error.message, null];
  return new ApiError(status, message, 'invalid_request_error', null, code);
}

// ---------------------------------------------------------------------------------------------
// The chat page: static files read once, served as they are (no build step, nothing external).

const PAGE_DIR = new URL('./page/', import.meta.url);
const PAGE = new Map(
  (
    [
      ['/', 'index.html', 'text/html; charset=utf-8'],
      ['/chat.js', 'chat.js', 'text/javascript; charset=utf-8'],
      ['/chat.css', 'chat.css', 'text/css; charset=utf-8'],
    ] as const
  ).map(([path, name, type]) => [path, { type, body: readFileSync(new URL(name, PAGE_DIR)) }]),
);
const PAGE_HEADERS = {
  'content-security-policy': "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'cache-control': 'no-cache',
};
