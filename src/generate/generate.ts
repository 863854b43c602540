/**
 * Text generation on top of any token stream (plain autoregressive now, tree decoders later):
 * stopping on EOS, stop strings, the token limit, the context limit or an abort signal; streaming
 * text pieces as they become final; and the run's statistics.
 *
 * A Generation is an async iterable of pieces. Each piece carries the ids accepted in one decoding
 * step and the text they completed, so a caller can show tokens accepted together as one run.
 * After iteration, `result` holds the whole text, ids and stats.
 */
import { InputError } from '../errors.ts';
import type { Tokenizer } from '../tokenizer/tokenizer.ts';
import { StreamDecoder } from '../tokenizer/stream-decoder.ts';
import type { TokenStream } from '../decode/autoregressive.ts';
import { checkPromptIds } from '../decode/rows.ts';
import { StopStrings } from './stop.ts';

export interface GenerateLimits {
  /** Most new tokens to produce. */
  maxTokens: number;
  /** Longest sequence (prompt + new tokens) the model supports. */
  contextLength: number;
  /** Token ids that end generation (not included in the output). */
  eosIds: readonly number[];
  /** Strings that end generation (not included in the output). */
  stop?: readonly string[];
  /** The prompt's last ids: context for detokenising the first new tokens (their spaces). */
  context?: readonly number[];
  signal?: AbortSignal;
}

export type FinishReason = 'eos' | 'stop' | 'length' | 'context' | 'aborted';

/** Which decoder produced the tokens: plain also when a PPD setup had nothing to guess with (ppd/adapter-folder.ts guessesNothing). */
export type DecoderKind = 'plain' | 'ppd' | 'speculative';

export interface GenerationStats {
  promptTokens: number;
  newTokens: number;
  /** Forwards that produced tokens: one per chunk of the stream (the first is the prompt's). */
  steps: number;
  /** Wall time from the first forward to the last accepted token. */
  seconds: number;
  /** Wall time until the first new token (the prompt's forward). */
  prefillSeconds: number;
  /** newTokens / seconds, end to end. */
  tokensPerSecond: number;
  /** Mean tokens produced per forward (newTokens / steps): 1 for plain decoding, more with PPD. */
  tau: number;
  finishReason: FinishReason;
  decoder: DecoderKind;
}

export interface Piece {
  /** Text that became final with this step ('' while a character or stop string is pending). */
  text: string;
  /** Ids accepted in this step (EOS and ids past a limit excluded). */
  ids: number[];
}

export interface GenerationResult {
  text: string;
  ids: number[];
  stats: GenerationStats;
}

export function checkLimits(promptTokens: number, limits: GenerateLimits): void {
  if (!Number.isInteger(limits.maxTokens) || limits.maxTokens < 1) {
    throw new InputError(`max tokens must be a positive integer, got ${limits.maxTokens}`);
  }
  checkPromptIds(promptTokens);
  if (promptTokens >= limits.contextLength) {
    throw new InputError(`the prompt has ${promptTokens} tokens; the model's context is ${limits.contextLength}`);
  }
  new StopStrings(limits.stop ?? []); // validates the stop strings now, not at the first token
}

export class Generation implements AsyncIterable<Piece> {
  private finished: GenerationResult | undefined;

  constructor(
    private readonly stream: TokenStream,
    private readonly tokenizer: Tokenizer,
    private readonly promptTokens: number,
    private readonly limits: GenerateLimits,
    /** What `stream` decodes with, reported in the stats. */
    private readonly decoder: DecoderKind = 'plain',
  ) {
    checkLimits(promptTokens, limits);
  }

  /** The outcome, once iteration has finished. */
  get result(): GenerationResult {
    if (!this.finished) throw new Error('Generation.result read before the generation finished');
    return this.finished;
  }

  /** Runs to the end and returns the outcome (for callers that do not stream). */
  async complete(): Promise<GenerationResult> {
    for await (const _ of this);
    return this.result;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Piece> {
    const { limits } = this;
    const eos = new Set(limits.eosIds);
    const budget = Math.min(limits.maxTokens, limits.contextLength - this.promptTokens);
    const decoder = new StreamDecoder(this.tokenizer, { context: limits.context });
    const stops = new StopStrings(limits.stop ?? []);
    const ids: number[] = [];
    let text = '';
    let steps = 0;
    let finishReason: FinishReason | undefined;
    const start = performance.now();
    let firstToken = start;

    try {
      for await (const chunk of this.stream) {
        if (steps === 0) firstToken = performance.now();
        steps++;
        const accepted: number[] = [];
        for (const id of chunk) {
          if (eos.has(id)) {
            finishReason = 'eos';
            break;
          }
          accepted.push(id);
          if (ids.length + accepted.length >= budget) {
            finishReason = budget === limits.maxTokens ? 'length' : 'context';
            break;
          }
        }
        // At the end, the decoder's and the stop matcher's held-back text is final too.
        let piece = stops.push(decoder.push(accepted)).emit;
        if (finishReason && !stops.stopped) piece += stops.push(decoder.flush()).emit + stops.flush();
        if (stops.stopped) finishReason = 'stop';
        ids.push(...accepted);
        text += piece;
        yield { text: piece, ids: accepted };
        if (!finishReason && limits.signal?.aborted) finishReason = 'aborted';
        if (finishReason) break;
      }
    } finally {
      // Breaking out of for-await already returned the stream; this covers a throwing consumer.
      await this.stream.return(undefined);
    }
    const seconds = (performance.now() - start) / 1000;
    this.finished = {
      text,
      ids,
      stats: {
        promptTokens: this.promptTokens,
        newTokens: ids.length,
        steps,
        seconds,
        prefillSeconds: (firstToken - start) / 1000,
        tokensPerSecond: seconds > 0 ? ids.length / seconds : 0,
        tau: steps > 0 ? ids.length / steps : 0,
        finishReason: finishReason ?? 'aborted',
        decoder: this.decoder,
      },
    };
  }
}
