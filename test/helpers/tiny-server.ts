/**
 * What the server tests share: a tiny random model folder with the byte tokenizer and its chat
 * template, an untrained PPD setup for it, a server listening on a free loopback port, a reader
 * for server-sent events, and a way to slow the model down so that cancellation, queueing and
 * timeouts can be watched mid-generation.
 */
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { LoadedModel } from '../../src/checkpoint/load.ts';
import { LatencyCurve } from '../../src/decode/latency.ts';
import type { LlamaModel } from '../../src/model/llama-model.ts';
import { PromptAdapter } from '../../src/ppd/adapter.ts';
import type { PpdSetup } from '../../src/ppd/setup.ts';
import { buildTreeSet } from '../../src/ppd/tree-builder.ts';
import { buildServer, type ServerOptions } from '../../src/server/app.ts';
import { BYTE_MODEL_SHAPE, writeByteModel } from './byte-model.ts';

/** Writes the shared tiny model (byte-model.ts) with the byte tokenizer and its chat template to `dir`. */
export function writeTinyModel(dir: string, seed = 11): string {
  return writeByteModel(dir, BYTE_MODEL_SHAPE, seed);
}

/** A made-up accuracy table for 3 prompt tokens: rank k at position i right ~ 0.5^(k+1) 0.8^i. */
const ACCURACIES = [0, 1, 2].map((i) => Array.from({ length: 6 }, (_, k) => 0.45 * Math.pow(0.5, k) * Math.pow(0.8, i)));

/** An untrained adapter and a small tree set: greedy output still equals plain decoding. */
export function tinyPpdSetup(loaded: LoadedModel): PpdSetup {
  const adapter = PromptAdapter.initialise(loaded.config, (ids) => loaded.model.embed(ids), [70, 80], { promptTokens: 3, virtualTokens: 1, attention: 'ensemble', initText: 't' });
  return { adapter, trees: buildTreeSet(ACCURACIES, { budget: 12, promptTokens: 3, virtualTokens: 1 }), verification: 'coupled' };
}

export interface RunningServer {
  app: FastifyInstance;
  url: string;
}

/**
 * L(n) for the tests' batching servers, so that starting one does not measure it (slowed models
 * would make that slow): flat for a few rows, then rising, as on a CPU.
 */
export const TEST_LATENCY = new LatencyCurve([
  { rows: 1, ms: 1 },
  { rows: 8, ms: 1.3 },
  { rows: 32, ms: 3 },
  { rows: 256, ms: 20 },
]);

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const app = buildServer({ latency: TEST_LATENCY, ...options });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as AddressInfo;
  return { app, url: `http://127.0.0.1:${port}` };
}

/** POSTs JSON (or a raw string body) and returns the response. */
export function post(url: string, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal,
  });
}

/** The events of a server-sent event stream: parsed JSON objects, and '[DONE]'. */
export async function readEvents(response: Response): Promise<(Record<string, any> | '[DONE]')[]> {
  const text = await response.text();
  return text
    .split('\n\n')
    .filter((event) => event.trim() !== '')
    .map((event) => {
      if (!event.startsWith('data: ')) throw new Error(`not a data event: ${JSON.stringify(event)}`);
      const data = event.slice(6);
      return data === '[DONE]' ? '[DONE]' : JSON.parse(data);
    });
}

/** Makes every forward of `model` take at least `ms` longer; returns the undo. */
export function slowDown(model: LlamaModel, ms: number): () => void {
  const original = model.forward;
  model.forward = async function (this: LlamaModel, input) {
    await new Promise((resolve) => setTimeout(resolve, ms));
    return original.call(this, input);
  };
  return () => {
    model.forward = original;
  };
}

/** Polls `/metrics` until `predicate` holds on its text (or fails after `ms`). */
export async function waitForMetrics(url: string, predicate: (text: string) => boolean, ms = 5000, headers: Record<string, string> = {}): Promise<string> {
  const deadline = Date.now() + ms;
  for (;;) {
    const text = await (await fetch(`${url}/metrics`, { headers })).text();
    if (predicate(text)) return text;
    if (Date.now() > deadline) throw new Error(`metrics never matched; last:\n${text}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The value of one sample in Prometheus text, e.g. metric(text, 'ppd_queue_depth'). */
export function metric(text: string, name: string, labels = ''): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(labels ? `${name}{${labels}} ` : `${name} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}
