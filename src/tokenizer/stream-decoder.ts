/**
 * StreamDecoder: turns token ids arriving one (or a few) at a time into text that is final.
 *
 * Per-token decoding is wrong for LLaMA tokenizers in two ways: a character spelled as several
 * byte-fallback tokens (<0xF0><0x9F><0x98><0x80>) is U+FFFD until its last byte arrives, and a
 * SentencePiece "▁word" decodes to "word" when first in the text but " word" after other text.
 * So we decode a short window of ids and emit only what the window adds past its already
 * emitted part, holding back text that ends in U+FFFD (an unfinished character) until it is
 * finished. The window restarts at the last emission point, which keeps the work per token
 * bounded by the window, not the whole text. Not stop strings (generate/stop.ts).
 *
 * Invariant (tested): the concatenation of everything push() and flush() return equals
 * tokenizer.decode(allIds, { skipSpecial, cleanUpSpaces: false }). The clean-up rewrite is
 * never applied, because it edits text around later tokens (" ." -> ".") that was already sent.
 */
import type { Tokenizer } from './tokenizer.ts';

export interface StreamDecoderOptions {
  /** Leave special tokens (BOS, EOS, ...) out of the text. Default true. */
  skipSpecial?: boolean;
  /**
   * Ids that come before the streamed ones (the prompt's last tokens): context only, never
   * emitted. With it, a continuation's first "▁word" keeps its space, as it would in the whole
   * text's decoding.
   */
  context?: readonly number[];
}

const REPLACEMENT_CHAR = '\uFFFD';

export class StreamDecoder {
  private readonly skipSpecial: boolean;
  private window: number[] = []; // ids from the window start to now
  private readIndex = 0; // window[0:readIndex] is emitted
  private readText = ''; // decode(window[0:readIndex])

  constructor(
    private readonly tokenizer: Tokenizer,
    options: StreamDecoderOptions = {},
  ) {
    this.skipSpecial = options.skipSpecial ?? true;
    const context = [...(options.context ?? [])];
    // Context that decodes to nothing (a lone BOS) would leave the start-of-text stripping on the
    // first streamed id, so it is only used when it decodes to text.
    if (context.length > 0 && this.decode(context).length > 0) {
      this.window = context;
      this.readIndex = context.length;
      this.readText = this.decode(context);
    }
  }

  /** Adds ids; returns the text they complete (often '', sometimes several tokens' worth). */
  push(ids: number | readonly number[]): string {
    if (typeof ids === 'number') this.window.push(ids);
    else this.window.push(...ids);
    const text = this.decode(this.window);
    if (text.length <= this.readText.length || text.endsWith(REPLACEMENT_CHAR)) return '';
    const fresh = text.slice(this.readText.length);
    this.advance(text);
    return fresh;
  }

  /** At the end of generation: everything still held back, unfinished characters included. */
  flush(): string {
    const text = this.decode(this.window);
    const rest = text.slice(this.readText.length);
    this.window = [];
    this.readIndex = 0;
    this.readText = '';
    return rest;
  }

  /**
   * Marks the whole window as emitted (`text` is its decoding) and restarts the window at the
   * previous emission point. The ids between the two points stay in the window as context: they
   * make "▁word" decode with its space, and they must decode to non-empty text, or the start-of-
   * text space stripping would fall on the new ids; if they decode to nothing the window grows.
   */
  private advance(text: string): void {
    const tail = this.window.slice(this.readIndex);
    const tailText = this.decode(tail);
    if (tailText.length > 0) {
      this.window = tail;
      this.readText = tailText;
    } else {
      this.readText = text;
    }
    this.readIndex = this.window.length;
  }

  private decode(ids: number[]): string {
    return this.tokenizer.decode(ids, { skipSpecial: this.skipSpecial, cleanUpSpaces: false });
  }
}
