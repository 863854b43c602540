/**
 * A streaming client for `ppd serve`'s completions API, as the server benchmarks use it: one
 * request sent and read event by event, timed (time to first token, the gaps between tokens),
 * never throwing (a failure is an outcome with its reason). Also the quantiles the reports show.
 *
 * Not a general OpenAI client: it reads exactly the chunks ppd sends (`accepted_tokens`,
 * `decoding`, `usage` with stream_options.include_usage).
 */
import { Worker } from 'node:worker_threads';
import { typeScriptWorkerEntry } from '../src/tokenizer/thread.ts';

export interface StreamOutcome {
  ok: boolean;
  /** Why it failed: the HTTP status and body, an error event, or a stream cut short. */
  error?: string;
  text: string;
  /** completion_tokens from the usage chunk. */
  newTokens: number;
  /** From the final chunk's `decoding`. */
  acceptedPerStep: number;
  /** Seconds from sending the request to the first chunk that carried tokens. */
  timeToFirstToken: number;
  /** Seconds per token between chunks after the first: each gap divided by the chunk's tokens. */
  interTokenLatencies: number[];
  /** Seconds from sending to [DONE]. */
  latency: number;
  /** Response headers the caller asked to keep (e.g. which replica answered). */
  headers: Record<string, string>;
}

export interface StreamOptions {
  /** Extra request headers. */
  headers?: Record<string, string>;
  /** Response headers to keep in the outcome. */
  keepHeaders?: string[];
}

/** POSTs `body` (stream: true is added) to `${url}/v1/completions` and reads the whole stream. */
export async function streamCompletion(url: string, body: object, options: StreamOptions = {}): Promise<StreamOutcome> {
  const start = performance.now();
  const outcome: StreamOutcome = { ok: false, text: '', newTokens: 0, acceptedPerStep: 0, timeToFirstToken: 0, interTokenLatencies: [], latency: 0, headers: {} };
  try {
    const response = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...options.headers },
      body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
    });
    for (const name of options.keepHeaders ?? []) outcome.headers[name] = response.headers.get(name) ?? '';
    if (response.status !== 200) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    let done = false;
    let lastChunk = 0;
    while (!done) {
      const { value, done: ended } = await reader.read();
      if (ended) break;
      buffer += value;
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const data = buffer.slice(0, end).replace(/^data: /, '');
        buffer = buffer.slice(end + 2);
        if (data === '[DONE]') {
          done = true;
          break;
        }
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(`error event: ${chunk.error.message}`);
        if (chunk.accepted_tokens > 0) {
          const now = performance.now();
          if (lastChunk === 0) outcome.timeToFirstToken = (now - start) / 1000;
          else for (let t = 0; t < chunk.accepted_tokens; t++) outcome.interTokenLatencies.push((now - lastChunk) / 1000 / chunk.accepted_tokens);
          lastChunk = now;
        }
        outcome.text += chunk.choices[0]?.text ?? '';
        if (chunk.decoding) outcome.acceptedPerStep = chunk.decoding.accepted_per_step;
        if (chunk.usage) outcome.newTokens = chunk.usage.completion_tokens;
      }
    }
    if (!done) throw new Error('the stream ended without [DONE]');
    outcome.ok = true;
  } catch (error) {
    outcome.error = (error as Error).message.slice(0, 200);
  }
  outcome.latency = (performance.now() - start) / 1000;
  return outcome;
}

/** What runClients runs: `clients` concurrent clients, each sending body after body (client c starts at body 3c) until `seconds` have passed. */
export interface ClientsJob {
  url: string;
  bodies: object[];
  clients: number;
  seconds: number;
}

/** One request of a ClientsJob: its outcome and which body it sent. */
export type ClientOutcome = StreamOutcome & { body: number };

/** A ClientsJob's requests, and the seconds from the first request sent to the last answer read (thread start-up not included). */
export interface ClientsRun {
  outcomes: ClientOutcome[];
  wallSeconds: number;
}

/**
 * Runs `job` on a worker thread of its own (client-thread.ts), so that the clients read the
 * stream while the caller's thread is busy, as clients in another process would. Requests
 * started before the deadline finish; none starts after.
 */
export function runClients(job: ClientsJob): Promise<ClientsRun> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(typeScriptWorkerEntry(new URL('./client-thread.ts', import.meta.url)), { workerData: job });
    worker.once('message', (run: ClientsRun) => {
      resolve(run);
      void worker.terminate();
    });
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the client thread exited with code ${code} before answering`)));
  });
}

export interface Quantiles {
  p50: number;
  p95: number;
  max: number;
}

/** Nearest-rank quantiles; all 0 for no values. */
export function quantiles(values: readonly number[]): Quantiles {
  if (values.length === 0) return { p50: 0, p95: 0, max: 0 };
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return { p50: at(0.5), p95: at(0.95), max: sorted[sorted.length - 1]! };
}
