/**
 * Tokenizer: text <-> token ids for a LLaMA-family model, from its Hugging Face tokenizer.json
 * and tokenizer_config.json, on top of @huggingface/tokenizers.
 *
 * What this wrapper adds: the BOS decision made once and explicitly (`addBosByDefault`), typed
 * errors naming the file, ids the tokenizer does not know decoding to nothing (as in Hugging
 * Face's Rust tokenizers; a model's embedding table is often padded past the tokenizer's vocab),
 * and the chat template looked up. Not incremental decoding (stream-decoder.ts), not chat
 * rendering (chat-template.ts).
 */
import { Tokenizer as HfTokenizerClass } from '@huggingface/tokenizers';
import { FormatError, InputError, ModelError } from '../errors.ts';
import { parseJson, readText, type ReadableFile } from '../format/readable-file.ts';

type Json = Record<string, unknown>;

/**
 * The parts of @huggingface/tokenizers that we use. Its published .d.ts files import without
 * extensions, which NodeNext cannot resolve, so the class arrives untyped; this pins it down.
 */
interface HfTokenizer {
  encode(text: string, options: { add_special_tokens: boolean }): { ids: number[] };
  decode(ids: number[], options: { skip_special_tokens: boolean; clean_up_tokenization_spaces: boolean }): string;
  token_to_id(token: string): number | undefined;
  id_to_token(id: number): string | undefined;
  model: { vocab: (string | undefined)[] } | null;
  decoder: HfDecoder | null;
  normalizer: { normalize(text: string): string } | null;
  get_vocab(withAddedTokens: boolean): Map<string, number>;
  /** tokenizer.json's post_processor as the library built it (TemplateProcessing, RobertaProcessing, BertProcessing, ByteLevel, Sequence), or null. */
  post_processor: { post_process(tokens: string[], pair: string[] | null, addSpecialTokens: boolean): { tokens: string[] } } | null;
}

interface HfDecoder {
  config: { type?: string };
  decoders?: HfDecoder[]; // Sequence
  text_decoder?: TextDecoder; // ByteFallback
}

export interface EncodeOptions {
  /** Prepend BOS; defaults to what the tokenizer files say (`addBosByDefault`). */
  addBos?: boolean;
}

/** What a tokenizer is built from: enough to build the same one again (e.g. in a worker thread). */
export interface TokenizerSource {
  tokenizerJson: object;
  tokenizerConfig: object;
  chatTemplate?: string;
  origin: string;
}

export interface DecodeOptions {
  /** Drop special tokens (BOS, EOS, ...) from the text. Default false. */
  skipSpecial?: boolean;
  /** Apply the "clean up tokenization spaces" rewrite (" ." -> "."); defaults to the config. */
  cleanUpSpaces?: boolean;
}

/** A special token as tokenizer_config.json writes it: a string or an AddedToken object. */
function tokenContent(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (value !== null && typeof value === 'object' && typeof (value as Json).content === 'string') {
    return (value as Json).content as string;
  }
  return null;
}

/** Stands for the text in leadingSpecialTokens: no vocabulary holds it. */
const TEXT_MARK = '\u0000ppd:text\u0000';

/**
 * The special tokens tokenizer.json's post-processor puts before a text, found by running it as
 * @huggingface/tokenizers does when special tokens are added (what transformers' encode does):
 * a TemplateProcessing's tokens before $A, Roberta's or Bert's cls, nothing for ByteLevel, each of
 * a Sequence in turn.
 */
function leadingSpecialTokens(hf: HfTokenizer): string[] {
  if (hf.post_processor === null) return [];
  const { tokens } = hf.post_processor.post_process([TEXT_MARK], null, true);
  const at = tokens.indexOf(TEXT_MARK);
  return at < 0 ? [] : tokens.slice(0, at);
}

/**
 * The library's ByteFallback decoder uses a default TextDecoder, which drops a leading U+FEFF
 * from each run of byte tokens; Rust tokenizers keeps it. Swap in one that keeps it, so decoding
 * is exact and does not depend on where a run of byte tokens starts (stream windows).
 */
function keepByteOrderMarks(decoder: HfDecoder | null): void {
  if (decoder?.config.type === 'ByteFallback') {
    decoder.text_decoder = new TextDecoder('utf-8', { ignoreBOM: true });
  }
  decoder?.decoders?.forEach(keepByteOrderMarks);
}

export class Tokenizer {
  /** One past the largest id the tokenizer knows (the model's vocabulary may be larger). */
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  /** Whether encode() prepends BOS unless told otherwise. */
  readonly addBosByDefault: boolean;
  /** Jinja chat template, or null when the model has none. */
  readonly chatTemplate: string | null;
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  private readonly cleanUpSpaces: boolean;
  /** Longest vocabulary or added-token string (UTF-16 units); computed on first use. */
  private longestToken = 0;

  private constructor(
    private readonly hf: HfTokenizer,
    /** What this tokenizer was built from (`Tokenizer.fromSource` builds it again). */
    readonly source: TokenizerSource,
  ) {
    const config = source.tokenizerConfig as Json;
    keepByteOrderMarks(hf.decoder);
    this.vocabSize = hf.model?.vocab.length ?? 0;
    // tokenizer_config's add_bos_token is what LlamaTokenizer obeys; files without it (LLaMA-3),
    // or folders without tokenizer_config.json at all, add BOS through tokenizer.json's
    // post-processor, which then also names the BOS token when the config does not.
    const leading = leadingSpecialTokens(hf)[0] ?? null;
    this.bosToken = tokenContent(config.bos_token) ?? leading;
    this.eosToken = tokenContent(config.eos_token);
    this.bosId = this.bosToken === null ? null : (hf.token_to_id(this.bosToken) ?? null);
    this.eosId = this.eosToken === null ? null : (hf.token_to_id(this.eosToken) ?? null);
    this.addBosByDefault = typeof config.add_bos_token === 'boolean' ? config.add_bos_token : this.bosToken !== null && leading === this.bosToken;
    if (this.addBosByDefault && this.bosId === null) {
      throw new FormatError(source.origin, `BOS token ${JSON.stringify(this.bosToken)} is not in the vocabulary`);
    }
    // Missing means false: LLaMA-family configs set it false, and the rewrite is lossy.
    this.cleanUpSpaces = config.clean_up_tokenization_spaces === true;
    // A list of named templates is resolved by checkpoint/model-folder.ts and arrives as `chatTemplate`.
    const own = typeof config.chat_template === 'string' ? config.chat_template : null;
    this.chatTemplate = source.chatTemplate ?? own;
  }

  /**
   * Reads a tokenizer.json file (and closes it). `tokenizerConfig` is the parsed
   * tokenizer_config.json (bos, eos, add_bos_token, chat_template); `chatTemplate` overrides its
   * chat_template (e.g. from a chat_template.jinja file).
   */
  static fromFile(tokenizerJson: ReadableFile, tokenizerConfig: object = {}, chatTemplate?: string): Tokenizer {
    let json: unknown;
    try {
      json = parseJson(readText(tokenizerJson), tokenizerJson.name);
    } finally {
      tokenizerJson.close();
    }
    return Tokenizer.fromJson(json, tokenizerConfig, chatTemplate, tokenizerJson.name);
  }

  /** Builds from already-parsed objects; `origin` names them in errors. */
  static fromJson(
    tokenizerJson: unknown,
    tokenizerConfig: object = {},
    chatTemplate?: string,
    origin = 'tokenizer.json',
  ): Tokenizer {
    if (tokenizerJson === null || typeof tokenizerJson !== 'object' || Array.isArray(tokenizerJson)) {
      throw new FormatError(origin, 'must hold a JSON object');
    }
    let hf: HfTokenizer;
    try {
      hf = new HfTokenizerClass(tokenizerJson, tokenizerConfig) as HfTokenizer;
    } catch (e) {
      throw new FormatError(origin, `is not a usable tokenizer: ${(e as Error).message}`);
    }
    return new Tokenizer(hf, { tokenizerJson, tokenizerConfig, chatTemplate, origin });
  }

  static fromSource(source: TokenizerSource): Tokenizer {
    return Tokenizer.fromJson(source.tokenizerJson, source.tokenizerConfig, source.chatTemplate, source.origin);
  }

  /** Token ids of `text`. Never appends EOS: a prompt must not end the sequence. */
  encode(text: string, { addBos = this.addBosByDefault }: EncodeOptions = {}): number[] {
    // add_special_tokens is off so the post-processor adds nothing; BOS is our decision alone.
    const ids = text.length === 0 ? [] : this.hf.encode(text, { add_special_tokens: false }).ids;
    if (!addBos) return ids;
    if (this.bosId === null) throw new ModelError('cannot add BOS: the tokenizer defines no bos_token');
    return [this.bosId, ...ids];
  }

  /**
   * A lower bound on encode(text).length, in time linear in the text and far below encoding's:
   * no token covers more characters of the normalized text than its own string has (byte
   * tokens cover one byte, byte-level tokens one byte per character), and whitespace is left
   * out of the count in case a pre-tokenizer drops it. So a prompt can be found too long for
   * the context before it is tokenized (BPE over a long text takes seconds).
   */
  minTokens(text: string): number {
    if (this.longestToken === 0) {
      for (const token of this.hf.get_vocab(true).keys()) this.longestToken = Math.max(this.longestToken, token.length);
      this.longestToken = Math.max(1, this.longestToken);
    }
    const normalized = this.hf.normalizer ? this.hf.normalizer.normalize(text) : text;
    let visible = 0;
    for (let i = 0; i < normalized.length; i++) if (!isWhitespace(normalized.charCodeAt(i))) visible++;
    return Math.ceil(visible / this.longestToken);
  }

  /** Text of `ids`. Ids the tokenizer does not know contribute nothing. */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    const known: number[] = [];
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0) throw new InputError(`token id must be an integer >= 0, got ${id}`);
      if (this.hf.id_to_token(id) !== undefined) known.push(id);
    }
    if (known.length === 0) return '';
    return this.hf.decode(known, {
      skip_special_tokens: options.skipSpecial ?? false,
      clean_up_tokenization_spaces: options.cleanUpSpaces ?? this.cleanUpSpaces,
    });
  }

  /** The vocabulary string of `id` (e.g. "▁the", "<0x0A>"), or undefined if unknown. */
  idToToken(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }

  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }
}

/** Whitespace as JavaScript's \s sees it (ASCII, NBSP, Unicode spaces, line separators, BOM). */
function isWhitespace(code: number): boolean {
  return (
    (code >= 0x09 && code <= 0x0d) || code === 0x20 || code === 0xa0 || code === 0x1680 || (code >= 0x2000 && code <= 0x200a) ||
    code === 0x2028 || code === 0x2029 || code === 0x202f || code === 0x205f || code === 0x3000 || code === 0xfeff
  );
}
