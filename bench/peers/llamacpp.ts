/**
 * llama.cpp as a peer, through node-llama-cpp (pinned to 3.21.1, a dev dependency): the same
 * GGUF file, fed the same token ids, decoded greedily, plainly or with one of llama.cpp's token
 * predictors (a draft model, or input lookup). Used by `npm run bench:llamacpp` and by the logits
 * parity test. CPU only: its prebuilt binary, never a build (`build: 'never'`), no GPU layers.
 *
 * Not part of ppd: nothing under src/ imports this, and ppd runs without node-llama-cpp.
 */
import {
  DraftSequenceTokenPredictor,
  getLlama,
  InputLookupTokenPredictor,
  LlamaLogLevel,
  type Llama,
  type LlamaContext,
  type LlamaModel,
  type Token,
  type TokenPredictor,
} from 'node-llama-cpp';

export type Predictor = 'none' | 'draft' | 'lookup';

export interface PeerOptions {
  /** llama.cpp compute threads. */
  threads: number;
  /** Context size of each sequence (prompt + new tokens must fit). */
  contextSize: number;
  /** A draft GGUF model for the 'draft' predictor. */
  draftPath?: string;
  /** Draft tokens per proposal at most (node-llama-cpp's default: 16). */
  draftMaxTokens?: number;
  /** Stop drafting below this draft confidence (node-llama-cpp's default: 0.6). */
  draftMinConfidence?: number;
  /** Type of llama.cpp's KV cache (default F16, llama.cpp's); parity checks take F32 to leave only the engines' own rounding. */
  kvCacheType?: 'F16' | 'F32';
}

export interface PeerRun {
  ids: number[];
  seconds: number;
  /** Predicted tokens that were validated / refuted (0 without a predictor). */
  validated: number;
  refuted: number;
}

/** node-llama-cpp's own defaults for the draft predictor, recorded in reports. */
export const DRAFT_DEFAULTS = { maxTokens: 16, minConfidence: 0.6 } as const;

let shared: Promise<Llama> | undefined;

/** One llama.cpp instance per process: its binary loads once (about half a second). */
export function llamaInstance(): Promise<Llama> {
  shared ??= getLlama({ gpu: false, build: 'never', progressLogs: false, logLevel: LlamaLogLevel.error, skipDownload: true });
  return shared;
}

export class LlamaCppPeer {
  private constructor(
    private readonly model: LlamaModel,
    private readonly context: LlamaContext,
    private readonly draft: { model: LlamaModel; context: LlamaContext } | undefined,
    private readonly options: PeerOptions,
  ) {}

  static async open(modelPath: string, options: PeerOptions): Promise<LlamaCppPeer> {
    const llama = await llamaInstance();
    // F32 parity runs also leave flash attention off: llama.cpp's CPU kernel computes it in F16.
    const kvCache = options.kvCacheType === undefined ? {} : { experimentalKvCacheKeyType: options.kvCacheType, experimentalKvCacheValueType: options.kvCacheType, ...(options.kvCacheType === 'F32' ? { flashAttention: false } : {}) };
    const contextOptions = { contextSize: options.contextSize, threads: options.threads, sequences: 1, ...kvCache };
    const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
    const context = await model.createContext(contextOptions);
    let draft: { model: LlamaModel; context: LlamaContext } | undefined;
    if (options.draftPath !== undefined) {
      const draftModel = await llama.loadModel({ modelPath: options.draftPath, gpuLayers: 0 });
      draft = { model: draftModel, context: await draftModel.createContext(contextOptions) };
    }
    return new LlamaCppPeer(model, context, draft, options);
  }

  /** llama.cpp's own tokenisation of `text` (for the tokenizer agreement check). */
  tokenize(text: string): number[] {
    return this.model.tokenize(text).map(Number);
  }

  /**
   * Greedy continuation of `promptIds`: up to `maxTokens` new ids, stopping after an id of
   * `eosIds` (llama.cpp's own end-of-generation stop is off, so `[]` means exactly `maxTokens`).
   * Timed end to end, the prompt's evaluation included, as ppd's runs are.
   */
  async generate(promptIds: readonly number[], maxTokens: number, eosIds: readonly number[], predictor: Predictor = 'none'): Promise<PeerRun> {
    const tokenPredictor = this.predictor(predictor);
    // LlamaCompletion and LlamaChat hand the lookup predictor the input to search; evaluate() does not.
    if (tokenPredictor instanceof InputLookupTokenPredictor) tokenPredictor.updateInputTokens(promptIds as Token[]);
    const sequence = this.context.getSequence(tokenPredictor === undefined ? {} : { tokenPredictor });
    try {
      const ids: number[] = [];
      const started = performance.now();
      for await (const token of sequence.evaluate(promptIds as Token[], { temperature: 0, yieldEogToken: true })) {
        ids.push(token);
        if (ids.length >= maxTokens || eosIds.includes(token)) break;
      }
      const seconds = (performance.now() - started) / 1000;
      const { validated, refuted } = sequence.tokenPredictions;
      return { ids, seconds, validated, refuted };
    } finally {
      sequence.dispose();
      // The predictor does not dispose its draft sequence, and the draft context has one.
      if (tokenPredictor instanceof DraftSequenceTokenPredictor) tokenPredictor.draftSequence.dispose();
    }
  }

  /**
   * The next-token distribution after each prefix of `ids` (full softmax at temperature 1),
   * [ids.length][vocab], for the logits parity check.
   */
  async nextTokenProbabilities(ids: readonly number[], vocabSize: number): Promise<Float32Array[]> {
    const sequence = this.context.getSequence();
    try {
      const options = { temperature: 1, topK: vocabSize, topP: 1, minP: 0 };
      const input = ids.map((id) => [id as Token, { generateNext: { probabilities: true, options } }] as [Token, { generateNext: { probabilities: true; options: typeof options } }]);
      const output = await sequence.controlledEvaluate(input);
      return output.map((item, i) => {
        const probabilities = item?.next.probabilities;
        if (probabilities === undefined) throw new Error(`llama.cpp returned no probabilities at position ${i}`);
        const dense = new Float32Array(vocabSize);
        for (const [token, p] of probabilities) dense[token] = p;
        return dense;
      });
    } finally {
      sequence.dispose();
    }
  }

  /**
   * A sequence holding `past`, for timing batches after it: `run(batch)` evaluates the batch (one
   * llama_decode of batch.length rows; node-llama-cpp asks logits of its last row only) and then
   * erases it, so every batch sees the same past. llama.cpp's L(T) and, with an empty past, its
   * prompt processing. Close it before generating on this peer again.
   */
  async batchTimer(past: readonly number[]): Promise<{ run(batch: readonly number[]): Promise<void>; close(): void }> {
    const sequence = this.context.getSequence();
    if (past.length > 0) await sequence.evaluateWithoutGeneratingNewTokens(past as Token[]);
    return {
      run: async (batch) => {
        await sequence.evaluateWithoutGeneratingNewTokens(batch as Token[]);
        await sequence.eraseContextTokenRanges([{ start: past.length, end: past.length + batch.length }]);
      },
      close: () => sequence.dispose(),
    };
  }

  private predictor(kind: Predictor): TokenPredictor | undefined {
    if (kind === 'none') return undefined;
    if (kind === 'lookup') return new InputLookupTokenPredictor();
    if (this.draft === undefined) throw new Error('the draft predictor needs draftPath');
    return new DraftSequenceTokenPredictor(this.draft.context.getSequence(), {
      maxTokens: this.options.draftMaxTokens ?? DRAFT_DEFAULTS.maxTokens,
      minConfidence: this.options.draftMinConfidence ?? DRAFT_DEFAULTS.minConfidence,
    });
  }

  async close(): Promise<void> {
    await this.context.dispose();
    await this.model.dispose();
    if (this.draft !== undefined) {
      await this.draft.context.dispose();
      await this.draft.model.dispose();
    }
  }
}
