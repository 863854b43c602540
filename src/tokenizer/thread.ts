/**
 * Prompt encoding on a worker thread of its own, so that a long prompt (BPE over a megabyte of
 * text takes seconds) never stalls the event loop that streams other requests and answers
 * /health. One thread, one job at a time, in order of arrival; a job whose signal aborts while
 * it waits is dropped. An InputError raised by the encoding (a prompt too long for the context,
 * a chat the template rejects) comes back as an InputError with the same message; anything else
 * as a plain Error naming the thread.
 *
 * Not the encoding itself (prompt.ts, the same code the CLI runs on the main thread).
 */
import { Worker } from 'node:worker_threads';
import { InputError } from '../errors.ts';
import type { EncodePromptOptions, Prompt } from './prompt.ts';
import type { TokenizerSource } from './tokenizer.ts';

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

export class TokenizerThread {
  private worker: Worker | undefined;
  private readonly line: Waiting[] = [];
  private running: Waiting | undefined;
  private nextId = 0;
  private closed = false;

  constructor(private readonly source: TokenizerSource) {}

  /**
   * Starts the thread now rather than at the first job (it takes a quarter of a second);
   * resolves once it has built its tokenizer and encoded a first prompt.
   */
  async start(): Promise<void> {
    await this.encodePrompt(' ');
  }

  /** encodePrompt (prompt.ts) on the thread; rejects with `signal.reason` if it aborts while waiting. */
  encodePrompt(prompt: Prompt, options: EncodePromptOptions = {}, signal?: AbortSignal): Promise<number[]> {
    if (this.closed) return Promise.reject(new Error('the tokenizer thread is closed'));
    if (signal?.aborted) return Promise.reject(signal.reason);
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
