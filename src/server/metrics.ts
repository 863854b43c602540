/**
 * The server's Prometheus metrics (prom-client, one registry per server): requests by route and
 * status, generations by outcome, token and step counters per decoding mode, gauges for tokens
 * per second, mean accepted tokens per step and the queue, and with batching histograms of the
 * sequences, rows and time of each shared forward; prompts encoded inline or on the tokenizer
 * thread (tokenizer/thread.ts). Also the process's standard
 * metrics (resident memory, CPU, heap), which is how the serve benchmark watches memory.
 *
 * Rates over a window are the scraper's job (rate(ppd_generated_tokens_total) /
 * rate(ppd_generation_seconds_total)); the two gauges give the same ratio since start.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ForwardStep } from '../generate/scheduler.ts';
import type { GenerationResult } from '../generate/generate.ts';
import type { DecodingMode } from './openai.ts';
import type { RequestQueue } from './queue.ts';

const MODES: readonly DecodingMode[] = ['ppd', 'plain'];

export class ServerMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'route' | 'status'>;
  private readonly generations: Counter<'mode' | 'finish_reason'>;
  private readonly promptTokens: Counter<'mode'>;
  private readonly generatedTokens: Counter<'mode'>;
  private readonly steps: Counter<'mode'>;
  private readonly seconds: Counter<'mode'>;
  private readonly batchSequences: Histogram;
  private readonly forwardRows: Histogram;
  private readonly forwardSeconds: Histogram;
  private readonly promptsEncoded: Counter<'where'>;
  /** The same sums as the counters, readable synchronously for the ratio gauges. */
  private readonly totals = new Map(MODES.map((m) => [m, { tokens: 0, steps: 0, seconds: 0 }]));

  constructor(queue: RequestQueue) {
    const registers = [this.registry];
    this.requests = new Counter({ name: 'ppd_http_requests_total', help: 'HTTP requests by route and status (499: the client went away first)', labelNames: ['route', 'status'], registers });
    this.generations = new Counter({ name: 'ppd_generations_total', help: 'Finished generations by decoding mode and finish reason', labelNames: ['mode', 'finish_reason'], registers });
    this.promptTokens = new Counter({ name: 'ppd_prompt_tokens_total', help: 'Prompt tokens of finished generations', labelNames: ['mode'], registers });
    this.generatedTokens = new Counter({ name: 'ppd_generated_tokens_total', help: 'New tokens of finished generations', labelNames: ['mode'], registers });
    this.steps = new Counter({ name: 'ppd_decoding_steps_total', help: 'Forwards that produced tokens (the prompt forward included)', labelNames: ['mode'], registers });
    this.seconds = new Counter({ name: 'ppd_generation_seconds_total', help: 'Wall time spent generating', labelNames: ['mode'], registers });
    // Batching (generate/scheduler.ts): what each shared forward carried and took.
    this.batchSequences = new Histogram({ name: 'ppd_batch_sequences', help: 'Sequences per forward when batching', buckets: [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64], registers });
    this.forwardRows = new Histogram({ name: 'ppd_forward_rows', help: 'Input rows per forward when batching (decoding rows, trees, prompt chunks)', buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256], registers });
    this.forwardSeconds = new Histogram({ name: 'ppd_forward_seconds', help: 'Wall time of one forward when batching', buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5], registers });
    this.promptsEncoded = new Counter({ name: 'ppd_prompts_encoded_total', help: 'Prompts encoded where the request arrived (inline: short ones) or on the tokenizer thread', labelNames: ['where'], registers });
    const totals = this.totals;
    new Gauge({
      name: 'ppd_tokens_per_second',
      help: 'New tokens per second of generation time, since start',
      labelNames: ['mode'],
      registers,
      collect() {
        for (const [mode, t] of totals) this.set({ mode }, t.seconds > 0 ? t.tokens / t.seconds : 0);
      },
    });
    new Gauge({
      name: 'ppd_accepted_tokens_per_step',
      help: 'Mean tokens accepted per decoding step, since start (1 for plain decoding)',
      labelNames: ['mode'],
      registers,
      collect() {
        for (const [mode, t] of totals) this.set({ mode }, t.steps > 0 ? t.tokens / t.steps : 0);
      },
    });
    new Gauge({
      name: 'ppd_queue_depth',
      help: 'Requests waiting for a generation slot',
      registers,
      collect() {
        this.set(queue.depth);
      },
    });
    new Gauge({
      name: 'ppd_requests_active',
      help: 'Generations running now',
      registers,
      collect() {
        this.set(queue.active);
      },
    });
    collectDefaultMetrics({ register: this.registry });
  }

  request(route: string, status: number): void {
    this.requests.inc({ route, status: String(status) });
  }

  generation(mode: DecodingMode, result: GenerationResult): void {
    const s = result.stats;
    this.generations.inc({ mode, finish_reason: s.finishReason });
    this.promptTokens.inc({ mode }, s.promptTokens);
    this.generatedTokens.inc({ mode }, s.newTokens);
    this.steps.inc({ mode }, s.steps);
    this.seconds.inc({ mode }, s.seconds);
    const t = this.totals.get(mode)!;
    t.tokens += s.newTokens;
    t.steps += s.steps;
    t.seconds += s.seconds;
  }

  /** A prompt handed to its encoder (tokenizer/thread.ts). */
  promptEncoded(where: 'inline' | 'thread'): void {
    this.promptsEncoded.inc({ where });
  }

  /** One shared forward of the batch scheduler. */
  forward(step: ForwardStep): void {
    this.batchSequences.observe(step.sequences);
    this.forwardRows.observe(step.rows);
    this.forwardSeconds.observe(step.seconds);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
