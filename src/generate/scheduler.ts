/**
 * Continuous batching: many generations decode through shared forwards. Each generation's token
 * stream comes from `BatchScheduler.stream`; the scheduler runs one loop that, step after step,
 * gathers the rows of every sequence whose consumer is waiting for its next tokens — a plain
 * sequence's one row, a PPD sequence's tree (and lookup chain) within the row budget
 * (row-budget.ts), a chunk of a new sequence's prompt — into ONE forward (decode/batch.ts: per-row
 * positions, a block-diagonal mask, the past read from one paged store, model/kv-pages.ts), and
 * hands each sequence its slice of the output to verify and keep. New sequences join at the next
 * step and finished or abandoned ones leave there: nothing waits for a batch to fill or drain.
 *
 * Sequences are the same decoders as alone: plain steps (one row, sampled), PpdDecoder's
 * propose / buildInput / verify / keep and its chunked prefill. Each has its own Sampler (its own
 * seed) and its own pages; greedy output is the same as decoding alone (the only difference is
 * the summation order of attention terms, docs/BATCHING.md), and seeded sampling too, with
 * coupled verification (ppd/verify.ts), whatever tree the budget allows.
 *
 * Scheduling: a sequence takes part in a step only once its consumer asks for tokens (a slow
 * reader slows only itself, and no step is spent past the tokens a generation takes). Prompts
 * are prefilled in chunks: a whole PREFILL_CHUNK when nothing else decodes, else at most the
 * rows that keep the step within PREFILL_STALL times the cost of the decoding rows alone, oldest
 * prompt first, so a long prompt does not stall the streams in progress.
 *
 * Not here: admission (the server's queue bounds the sequences), stopping (Generation), HTTP.
 */
import { InputError } from '../errors.ts';
import { forwardBatch, type BatchPart } from '../decode/batch.ts';
import type { LatencyCurve } from '../decode/latency.ts';
import { PREFILL_CHUNK, prefillChunk, type PrefillChunk, type RowsPlan } from '../decode/rows.ts';
import type { TokenStream } from '../decode/autoregressive.ts';
import type { ForwardOutput, LlamaModel } from '../model/llama-model.ts';
import { KVPages, type PagedSequence } from '../model/kv-pages.ts';
import { PpdDecoder, type PpdOptions } from '../ppd/decode.ts';
import type { Sampler } from '../sampling/sampler.ts';
import { allocateRows, type RowOption } from './row-budget.ts';

/**
 * A step that carries a prefill chunk may cost up to this many times the same step without it:
 * a prompt of a few hundred tokens then delays the streams in progress by a few steps' worth,
 * not by its whole prefill at once.
 */
export const PREFILL_STALL = 4;
/** A prefill chunk is never smaller than this, so prompts progress even beside a full batch. */
const MIN_PREFILL_ROWS = 16;

export interface SchedulerOptions {
  /** L(n) on this machine, for the row budget and the prefill chunks. */
  latency: LatencyCurve;
  /** Most rows in one forward (default PREFILL_CHUNK). */
  maxRows?: number;
  /** Called after every forward (metrics). */
  onForward?: (step: ForwardStep) => void;
}

/** What one forward carried. */
export interface ForwardStep {
  /** Sequences with rows in it. */
  sequences: number;
  rows: number;
  /** Rows that were prompt chunks. */
  prefillRows: number;
  seconds: number;
}

/** One sequence to decode. */
export interface BatchRequest {
  ids: number[];
  sampler: Sampler;
  /** Decode with PPD (the adapter, trees, verification and lookup of PpdOptions); absent: plain. */
  ppd?: Omit<PpdOptions, 'sampler' | 'onStep'>;
}

/** A sequence in the batch: its decoder state and its consumer. */
class Member {
  readonly cache: PagedSequence;
  readonly ppd?: PpdDecoder;
  /** Prompt rows already prefilled; ids.length once decoding. */
  prefilled = 0;
  /** Plain: the last token (the next row's input). PPD: the next root. */
  last = -1;
  guesses: number[][] = [];
  /** Chunks produced and not yet taken. */
  private readonly ready: number[][] = [];
  private waiter?: { resolve: (chunk: number[]) => void; reject: (error: unknown) => void };
  private failure?: { error: unknown };
  /** The consumer stopped: leave at the next step. */
  left = false;

  constructor(
    readonly request: BatchRequest,
    store: KVPages,
    model: LlamaModel,
    readonly arrival: number,
  ) {
    if (request.ids.length === 0) throw new InputError('the prompt is empty (no tokens to condition on)');
    this.cache = store.sequence();
    if (request.ppd) this.ppd = new PpdDecoder(model, { ...request.ppd, sampler: request.sampler }, this.cache);
  }

  get prefilling(): boolean {
    return this.prefilled < this.request.ids.length;
  }

  /** Whether its consumer waits for a chunk. */
  get wanted(): boolean {
    return this.waiter !== undefined && !this.left;
  }

  next(): Promise<number[]> {
    if (this.failure) return Promise.reject(this.failure.error);
    const chunk = this.ready.shift();
    if (chunk) return Promise.resolve(chunk);
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  deliver(chunk: number[]): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    if (waiter) waiter.resolve(chunk);
    else this.ready.push(chunk);
  }

  fail(error: unknown): void {
    this.failure = { error };
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.reject(error);
  }
}

/** What a member contributes to one forward, and how it takes its slice back. */
interface Contribution {
  member: Member;
  plan: RowsPlan;
  prefillRows: number;
  finish: (out: ForwardOutput) => number[] | undefined;
}

export class BatchScheduler {
  private readonly store: KVPages;
  private readonly members: Member[] = [];
  private arrivals = 0;
  private running = false;
  /** A forward is reading the store. */
  private forwarding = false;
  /** Resolves the loop's wait for a consumer to ask, or a member to join or leave. */
  private wake?: () => void;

  constructor(
    private readonly model: LlamaModel,
    private readonly options: SchedulerOptions,
  ) {
    const c = model.config;
    this.store = new KVPages(c.numLayers, c.numKvHeads, c.headDim, 64);
  }

  /** Sequences in the batch (prefilling or decoding). */
  get size(): number {
    return this.members.length;
  }

  /** Rows of the paged store up to its last page in use (what every forward attends over). */
  get storeRows(): number {
    return this.store.length;
  }

  /**
   * The token stream of `request`, decoded in the batch: the first chunk is the first token
   * (after the prefill), then one chunk per step. The sequence joins when the stream is first
   * pulled and leaves when it is returned (the consumer stops) or fails.
   */
  async *stream(request: BatchRequest): TokenStream {
    const member = new Member(request, this.store, this.model, this.arrivals++);
    this.members.push(member);
    try {
      for (;;) {
        const chunk = member.next();
        this.poke();
        yield await chunk;
      }
    } finally {
      member.left = true;
      // Its pages go back now, unless a forward is reading them: then after it.
      if (!this.forwarding) this.sweep();
      this.poke();
    }
  }

  /** Starts the loop if it is not running, or wakes it if it waits. */
  private poke(): void {
    if (this.wake) {
      const wake = this.wake;
      this.wake = undefined;
      wake();
    }
    if (!this.running) {
      this.running = true;
      void this.loop();
    }
  }

  private async loop(): Promise<void> {
    try {
      for (;;) {
        this.sweep();
        if (this.members.length === 0) return;
        const wanted = this.members.filter((m) => m.wanted);
        if (wanted.length === 0) {
          await new Promise<void>((resolve) => (this.wake = resolve));
          continue;
        }
        try {
          await this.step(wanted);
        } catch (error) {
          // Planning failed (step() routes a forward's failure itself): fail the sequences it
          // was planning for rather than leave their consumers waiting for a chunk.
          for (const member of wanted) member.fail(error);
        }
        // Let consumers take their chunks and ask for the next before the next step is planned.
        await new Promise((resolve) => setImmediate(resolve));
      }
    } finally {
      this.running = false;
    }
  }

  /** Members whose consumer left give their pages back. */
  private sweep(): void {
    for (let i = this.members.length - 1; i >= 0; i--) {
      if (this.members[i]!.left) {
        this.members[i]!.cache.release();
        this.members.splice(i, 1);
      }
    }
  }

  private async step(wanted: Member[]): Promise<void> {
    const contributions = this.plan(wanted);
    const parts: BatchPart[] = contributions.map((c) => ({ plan: c.plan, past: c.member.cache.storeRows() }));
    const start = performance.now();
    let outs: ForwardOutput[];
    this.forwarding = true;
    try {
      outs = await forwardBatch(this.model, this.store, parts);
    } catch (error) {
      for (const c of contributions) c.member.fail(error);
      return;
    } finally {
      this.forwarding = false;
    }
    const seconds = (performance.now() - start) / 1000;
    contributions.forEach((c, i) => {
      try {
        const chunk = c.finish(outs[i]!);
        if (chunk) c.member.deliver(chunk);
      } catch (error) {
        c.member.fail(error);
      }
    });
    const rows = contributions.reduce((n, c) => n + c.plan.positionOffsets.length, 0);
    const prefillRows = contributions.reduce((n, c) => n + c.prefillRows, 0);
    this.options.onForward?.({ sequences: contributions.length, rows, prefillRows, seconds });
  }

  /** Every wanted member's rows for the next forward: prompt chunks first, then the row budget. */
  private plan(wanted: Member[]): Contribution[] {
    const maxRows = this.options.maxRows ?? PREFILL_CHUNK;
    const decoding = wanted.filter((m) => !m.prefilling);
    const prefilling = wanted.filter((m) => m.prefilling).sort((a, b) => a.arrival - b.arrival);
    const latency = this.options.latency;

    const contributions: Contribution[] = [];
    const rowsLeft = maxRows - decoding.length;
    const prefillBudget = Math.min(rowsLeft, decoding.length === 0 ? PREFILL_CHUNK : this.prefillAllowance(decoding.length));
    let prefillRows = 0;
    for (const member of prefilling) {
      const budget = prefillBudget - prefillRows;
      if (budget <= 0) break;
      // A remainder shorter than a minimum chunk goes in now: one more step for a few rows would
      // cost the prompt a whole step's wait and the batch a whole forward.
      const remaining = member.request.ids.length - member.prefilled;
      const c = this.prefillContribution(member, remaining - budget < MIN_PREFILL_ROWS ? Math.min(remaining, rowsLeft - prefillRows) : budget);
      contributions.push(c);
      prefillRows += c.prefillRows;
    }
    const fixedRows = contributions.reduce((n, c) => n + c.plan.positionOffsets.length, 0);
    const options = decoding.map((m) => this.rowOptions(m, maxRows));
    const budgets = allocateRows(options, latency, fixedRows, maxRows);
    decoding.forEach((member, i) => contributions.push(this.stepContribution(member, budgets[i]!)));
    return contributions;
  }

  /** Prefill rows allowed beside `decodingRows` decoding rows (PREFILL_STALL). */
  private prefillAllowance(decodingRows: number): number {
    const L = this.options.latency;
    const limit = PREFILL_STALL * L.at(decodingRows);
    let rows = MIN_PREFILL_ROWS;
    while (rows < PREFILL_CHUNK && L.at(decodingRows + rows + 1) <= limit) rows++;
    return rows;
  }

  private prefillContribution(member: Member, maxRows: number): Contribution {
    const { ids } = member.request;
    const chunk: PrefillChunk = member.ppd ? member.ppd.planPrefill(ids, member.prefilled, maxRows) : prefillChunk(this.model, ids, member.prefilled, undefined, maxRows);
    return {
      member,
      plan: chunk.rows,
      prefillRows: chunk.promptRows,
      finish: (out) => {
        member.prefilled = chunk.end;
        let logits: Float32Array | undefined;
        if (member.ppd) {
          const first = member.ppd.keepPrefill(ids, chunk, out);
          if (first) {
            logits = first.logits;
            member.guesses = first.guesses;
          }
        } else {
          member.cache.append(out.keys, out.values);
          if (chunk.last) logits = out.logits.subarray((chunk.promptRows - 1) * this.model.config.vocabSize);
        }
        if (logits === undefined) return undefined;
        member.last = member.request.sampler.sample(logits);
        return [member.last];
      },
    };
  }

  /** What a decoding member's step yields at each row count (a plain one: its one row). */
  private rowOptions(member: Member, maxRows: number): RowOption[] {
    return member.ppd ? member.ppd.stepOptions(member.last, member.guesses, maxRows) : [{ rows: 1, expectedTokens: 1 }];
  }

  private stepContribution(member: Member, rows: number): Contribution {
    const model = this.model;
    if (!member.ppd) {
      return {
        member,
        plan: { embeds: model.embed([member.last]), positionOffsets: Int32Array.of(0), block: Uint8Array.of(1) },
        prefillRows: 0,
        finish: (out) => {
          member.cache.append(out.keys, out.values);
          member.last = member.request.sampler.sample(out.logits);
          return [member.last];
        },
      };
    }
    const decoder = member.ppd;
    const proposal = decoder.propose(member.last, member.guesses, rows);
    return {
      member,
      plan: decoder.buildInput(proposal),
      prefillRows: 0,
      finish: (out) => {
        const result = decoder.keep(proposal, decoder.verify(proposal, out.logits), out);
        member.last = result.tokens.at(-1)!;
        member.guesses = result.guesses;
        return result.tokens;
      },
    };
  }
}
