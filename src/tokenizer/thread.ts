/**
 * Prompt encoding on a worker thread of its own, so that a long prompt (BPE over a megabyte of
 * text takes seconds) never stalls the event loop that streams other requests and answers
 * /health. One thread, one job at a time, in order of arrival; a job whose signal aborts while
 * it waits is dropped. An InputError raised by the encoding (a prompt too long for the context,
 * a chat the template rejects) comes back as an InputError with the same message; anything else
 * as a plain Error naming the thread.
 *
 * Given the tokenizer itself too, prompts of at most INLINE_PROMPT_CHARS characters are encoded
 * on the calling thread instead: the thread's answer is only read once the event loop is free,
 * which in a busy server is after the forward in progress (3–12 ms on the bundled model), while
 * encoding a short prompt takes 1–3 ms. Measured with `npm run bench:serve -- --part plain
 * --clients 1,4 --seconds 8` (bundled model, 150–291-character prompts, AMD EPYC, 2026-12-06),
 * three runs each way interleaved, the baseline sending every prompt to the thread: at 4 clients
 * with batching, time to first token p50 14.4 / 19.5 / 20.0 ms against 27.1 / 33.1 / 31.1 ms,
 * p95 unchanged (44–50 ms either way), 648–916 tokens/s in all against 595–627.
 *
 * Not the encoding itself (prompt.ts, the same code the CLI runs on the main thread).
 */
import { Worker } from 'node:worker_threads';
import { InputError } from '../errors.ts';
import { encodePrompt, type EncodePromptOptions, type Prompt } from './prompt.ts';
import type { Tokenizer, TokenizerSource } from './tokenizer.ts';

/** A job as the worker receives it. */
export interface EncodeJob {
  id: number;
  prompt: Prompt;
  options: EncodePromptOptions;
}

/** The worker's answer: the ids, or the error the encoding raised. */
export type EncodeAnswer = { id: number; ids: number[] } | { id: number; error: { name: string; message: string } };

interface Waiting {
  job: EncodeJob;
  resolve: (ids: number[]) => void;
  reject: (error: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

/**
 * Longest prompt (characters of text, or of a chat's contents and roles) encoded on the calling
 * thread when the tokenizer is at hand: about 2.5 ms of BPE with the bundled tokenizer
 * (1.5 ms for 256 characters, 4.1 ms for 1024, AMD EPYC).
 */
export const INLINE_PROMPT_CHARS = 512;

/** A prompt's size in characters, as INLINE_PROMPT_CHARS counts it. */
export function promptChars(prompt: Prompt): number {
  return typeof prompt === 'string' ? prompt.length : prompt.reduce((n, m) => n + m.role.length + m.content.length, 0);
}

export interface TokenizerThreadOptions {
  /** The same tokenizer on this thread, for short prompts; without it every prompt goes to the thread. */
  local?: Tokenizer;
  /** Called as each prompt is handed to its encoder: here ('inline') or the thread (for metrics). */
  onEncode?: (where: 'inline' | 'thread') => void;
}

export class TokenizerThread {
  private worker: Worker | undefined;
  private readonly line: Waiting[] = [];
  private running: Waiting | undefined;
  private nextId = 0;
  private closed = false;

  constructor(
    private readonly source: TokenizerSource,
    private readonly options: TokenizerThreadOptions = {},
  ) {}

  /**
   * Starts the thread now rather than at the first job (it takes a quarter of a second);
   * resolves once it has built its tokenizer and encoded a first prompt.
   */
  async start(): Promise<void> {
    await this.onThread(' ', {});
  }

  /**
   * encodePrompt (prompt.ts) on the thread, or here for a short prompt when the tokenizer is at
   * hand; rejects with `signal.reason` if it aborts while waiting.
   */
  encodePrompt(prompt: Prompt, options: EncodePromptOptions = {}, signal?: AbortSignal): Promise<number[]> {
    if (this.closed) return Promise.reject(new Error('the tokenizer thread is closed'));
    if (signal?.aborted) return Promise.reject(signal.reason);
    const { local, onEncode } = this.options;
    if (local && promptChars(prompt) <= INLINE_PROMPT_CHARS) {
      onEncode?.('inline');
      try {
        return Promise.resolve(encodePrompt(local, prompt, options));
      } catch (error) {
        return Promise.reject(error);
      }
    }
    onEncode?.('thread');
    return this.onThread(prompt, options, signal);
  }

  /** A job for the thread, in line after those waiting. */
  private onThread(prompt: Prompt, options: EncodePromptOptions, signal?: AbortSignal): Promise<number[]> {
    if (this.closed) return Promise.reject(new Error('the tokenizer thread is closed'));
    return new Promise((resolve, reject) => {
      const waiting: Waiting = { job: { id: this.nextId++, prompt, options }, resolve, reject, signal };
      if (signal) {
        waiting.onAbort = () => {
          const at = this.line.indexOf(waiting);
          if (at < 0) return; // already running: its answer arrives anyway and is delivered
          this.line.splice(at, 1);
          reject(signal.reason);
        };
        signal.addEventListener('abort', waiting.onAbort, { once: true });
      }
      this.line.push(waiting);
      this.pump();
    });
  }

  /** Stops the thread; jobs still waiting fail. */
  async close(): Promise<void> {
    this.closed = true;
    const error = new Error('the tokenizer thread is closed');
    for (const w of this.line.splice(0)) this.settle(w, () => w.reject(error));
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
  }

  private pump(): void {
    if (this.running) return;
    if (this.line.length === 0) {
      this.worker?.unref(); // idle: the thread never keeps the process alive
      return;
    }
    const next = this.line.shift()!;
    this.running = next;
    const worker = this.ensureWorker();
    worker.ref(); // a job waits for its answer
    worker.postMessage(next.job);
  }

  private ensureWorker(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(typeScriptWorkerEntry(new URL('./thread-worker.ts', import.meta.url)), { workerData: this.source });
    worker.on('message', (answer: EncodeAnswer) => {
      const done = this.running;
      if (!done || done.job.id !== answer.id) return;
      this.running = undefined;
      this.settle(done, () => ('ids' in answer ? done.resolve(answer.ids) : done.reject(rebuildError(answer.error))));
      this.pump();
    });
    worker.on('error', (error) => this.fail(worker, error));
    worker.on('exit', (code) => this.fail(worker, new Error(`the tokenizer thread exited (code ${code})`)));
    worker.unref(); // after the listeners (they ref it); pump() refs it while a job runs
    this.worker = worker;
    return worker;
  }

  /** The thread died: its running job fails, and the next job starts a new thread. */
  private fail(worker: Worker, error: Error): void {
    if (this.worker !== worker) return;
    this.worker = undefined;
    const running = this.running;
    this.running = undefined;
    if (running) this.settle(running, () => running.reject(error));
    if (!this.closed) this.pump();
  }

  private settle(w: Waiting, then: () => void): void {
    if (w.onAbort) w.signal?.removeEventListener('abort', w.onAbort);
    then();
  }
}

function rebuildError(e: { name: string; message: string }): Error {
  return e.name === 'InputError' ? new InputError(e.message) : new Error(`tokenizer thread: ${e.name}: ${e.message}`);
}

/**
 * A worker thread's entry for the TypeScript module `module`, as a module URL. ppd runs its
 * TypeScript through tsx, whose loader a worker thread does not inherit, so the entry registers
 * tsx and then imports the module. (Also bench:serve's client thread.)
 */
export function typeScriptWorkerEntry(module: URL): URL {
  const tsx = import.meta.resolve('tsx/esm/api');
  const code = `import { register } from ${JSON.stringify(tsx)}; register(); await import(${JSON.stringify(module.href)});`;
  return new URL(`data:text/javascript,${encodeURIComponent(code)}`);
}
