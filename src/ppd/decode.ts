/**
 * Parallel Prompt Decoding as a token stream (PPD.md section 6), interchangeable with plain
 * autoregressive decoding: same model, same `Generation` on top, several tokens per forward.
 *
 * Each step is four calls, in the shape of Medusa's loop: build the step's rows from the current
 * tree (candidates from the previous step's guess lists, prompt tokens from the adapter), one
 * forward over them, verify (greedy, typical or distribution-preserving rejection), then keep the
 * accepted rows' keys/values and take the next guesses from the prompt tokens attached to the
 * last accepted node, switching to the tree for that many guessing positions (dynamic trees).
 *
 * Stream shape: the prefill yields the first token; every step yields the accepted candidates
 * followed by the model's own next token (the bonus), which is the next step's root.
 */
import { InputError } from '../errors.ts';
import { newCache, PREFILL_CHUNK, type TokenStream } from '../generate/autoregressive.ts';
import type { KVCache } from '../model/kv-cache.ts';
import { causalMask, type LlamaModel } from '../model/llama-model.ts';
import { Sampler, topKIndices } from '../sampling/sampler.ts';
import type { PromptAdapter } from './adapter.ts';
import { promptVisibility } from './prompt-mask.ts';
import type { PpdTreeSet } from './tree.ts';
import { compileTree, withLookupChain, type TreeBuffers } from './tree-buffers.ts';
import { ContextLookup } from './lookup.ts';
import { DraftLength } from '../spec/draft-length.ts';
import { verifyGreedy, verifyRejection, verifyTypical, type CandidateNode, type Verdict } from './verify.ts';

export type Verification = 'greedy' | 'typical' | 'rejection';

export interface PpdOptions {
  adapter: PromptAdapter;
  trees: PpdTreeSet;
  /** Sampling options (temperature 0 = greedy) and the sampler's seeded Rng. */
  sampler: Sampler;
  /** How guesses are accepted when sampling; greedy sampling always verifies greedily. */
  verification?: Exclude<Verification, 'greedy'>;
  /** Called after each step with the number of tokens it produced (for stats and the UI). */
  onStep?: (accepted: number) => void;
  /**
   * Most tokens a context lookup (lookup.ts) may add per step as a chain of candidates beside
   * the tree; 0 or absent: none. How many it proposes adapts within 1..lookup to how many the
   * model has been accepting (DraftLength).
   */
  lookup?: number;
}

/** How many leading entries of `a` and `b` agree. */
function commonPrefix(a: readonly number[], b: readonly number[]): number {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}

/** Averaged logits of each prompt token: rows[i][j] → [count, V] (i < count). */
function promptLogits(logits: Float32Array, rows: number[][], V: number): Float32Array[] {
  return rows.map((virtualRows) => {
    const mean = new Float32Array(V);
    for (const r of virtualRows) for (let t = 0; t < V; t++) mean[t]! += logits[r * V + t]! / virtualRows.length;
    return mean;
  });
}

/** Checks that the trees fit the adapter (same N, V and attention). */
function checkTrees(adapter: PromptAdapter, trees: PpdTreeSet): void {
  const { promptTokens, virtualTokens, attention } = adapter.config;
  if (trees.promptTokens !== promptTokens || trees.virtualTokens !== virtualTokens || trees.attention !== attention) {
    throw new InputError(
      `the trees were built for N=${trees.promptTokens}, V=${trees.virtualTokens}, ${trees.attention} attention; ` +
        `the adapter has N=${promptTokens}, V=${virtualTokens}, ${attention}`,
    );
  }
}

/**
 * The PPD decoder's state and its two moves (prefill, tree step), exported so that a speculative
 * drafter (spec/drafter.ts) can drive the same steps and roll back its cache between them.
 */
export class PpdDecoder {
  private readonly buffers: TreeBuffers[];
  /** buffers[d] with a lookup chain of length l, by `${d}:${l}`. */
  private readonly chainBuffers = new Map<string, TreeBuffers>();
  private readonly cache: KVCache;
  private readonly V: number;
  /** The cached tokens (for context lookup) and the lookup's adaptive length; absent without lookup. */
  private readonly lookup?: { context: ContextLookup; length: DraftLength };

  constructor(
    private readonly model: LlamaModel,
    private readonly o: PpdOptions,
  ) {
    checkTrees(o.adapter, o.trees);
    const { promptTokens: N, virtualTokens, attention } = o.adapter.config;
    this.buffers = o.trees.trees.map((tree) => compileTree(tree, { promptTokens: N, virtualTokens, attention }));
    this.cache = newCache(model);
    this.V = model.config.vocabSize;
    if (o.lookup !== undefined && !(Number.isInteger(o.lookup) && o.lookup >= 0)) throw new InputError(`lookup must be an integer >= 0 (most tokens per step), got ${o.lookup}`);
    if (o.lookup !== undefined && o.lookup > 0) this.lookup = { context: new ContextLookup(), length: new DraftLength(o.lookup) };
  }

  /** Rows held in the cache (tokens whose keys/values are kept). */
  get cacheLength(): number {
    return this.cache.length;
  }

  /** Drops every cached row at index >= length (rolling back to an accepted prefix). */
  truncate(length: number): void {
    this.cache.truncate(length);
    this.lookup?.context.truncate(length);
  }

  /** The step buffers for d guessing positions and a lookup chain of `chain` tokens. */
  private buffersFor(d: number, chain: number): TreeBuffers {
    if (chain === 0) return this.buffers[d]!;
    const key = `${d}:${chain}`;
    let b = this.chainBuffers.get(key);
    if (b === undefined) this.chainBuffers.set(key, (b = withLookupChain(this.buffers[d]!, chain)));
    return b;
  }

  private get N(): number {
    return this.o.adapter.promptTokens;
  }

  /** Guess lists for the next step from the averaged logits of `count` prompt tokens. */
  private guessLists(perToken: Float32Array[]): number[][] {
    return perToken.map((logits) => topKIndices(logits, this.o.trees.topK));
  }

  /**
   * Prompt ids plus N prompt tokens in one forward (the last slice of a long prompt carries the
   * prompt tokens). Keeps only the real tokens' keys/values. Returns the last real row's logits
   * and the first guess lists.
   */
  async prefill(ids: number[]): Promise<{ logits: Float32Array; guesses: number[][] }> {
    if (ids.length === 0) throw new InputError('the prompt is empty (no tokens to condition on)');
    const { adapter } = this.o;
    const Vt = adapter.virtualTokens;
    const R = this.N * Vt;
    const C = this.model.config.hiddenSize;
    for (let start = 0; ; start += PREFILL_CHUNK) {
      const slice = ids.slice(start, start + PREFILL_CHUNK);
      const last = start + PREFILL_CHUNK >= ids.length;
      const P = this.cache.length;
      const T = slice.length;
      if (!last) {
        const out = await this.model.forward({ embeds: this.model.embed(slice), positions: slice.map((_, i) => P + i), mask: causalMask(T, P), cache: this.cache });
        this.cache.append(out.keys, out.values);
        continue;
      }
      // Real rows then prompt rows: prompt token i at position P+T+i sees every real token.
      const rows = T + R;
      const embeds = new Float32Array(rows * C);
      embeds.set(this.model.embed(slice));
      embeds.set(adapter.embeddings, T * C);
      const positions = [...slice.map((_, i) => P + i), ...Array.from({ length: R }, (_, r) => P + T + Math.floor(r / Vt))];
      const S = P + rows;
      const mask = new Uint8Array(rows * S);
      for (let t = 0; t < T; t++) mask.fill(1, t * S, t * S + P + t + 1);
      const visibility = promptVisibility(this.N, Vt, adapter.config.attention);
      for (let a = 0; a < R; a++) {
        const row = (T + a) * S;
        mask.fill(1, row, row + P + T);
        for (let b = 0; b < R; b++) mask[row + P + T + b] = visibility[a * R + b]!;
      }
      const out = await this.model.forward({ embeds, positions, mask, cache: this.cache });
      this.cache.append(out.keys, out.values, slice.map((_, i) => i));
      this.lookup?.context.push(...ids);
      const promptRows = Array.from({ length: this.N }, (_, i) => Array.from({ length: Vt }, (_, j) => T + i * Vt + j));
      return {
        logits: out.logits.slice((T - 1) * this.V, T * this.V),
        guesses: this.guessLists(promptLogits(out.logits, promptRows, this.V)),
      };
    }
  }

  /**
   * One tree step from `root` with `guesses` (guesses.length = d). `logits[i]` ([V], a view) is
   * the model's output at the row that predicts `tokens[i]` (the accepted path's rows, in order).
   */
  async step(root: number, guesses: number[][]): Promise<{ verdict: Verdict; tokens: number[]; logits: Float32Array[]; guesses: number[][] }> {
    const d = guesses.length;
    const chain = this.lookup ? this.lookup.context.propose(root, this.lookup.length.current) : [];
    const b = this.buffersFor(d, chain.length);
    const { adapter } = this.o;
    const C = this.model.config.hiddenSize;
    const P = this.cache.length;
    const S = P + b.rows;

    const tokenOfRow = new Map<number, number>([[0, root]]);
    for (const g of b.guesses) tokenOfRow.set(g.row, guesses[g.depth - 1]![g.rank]!);
    b.source.forEach((src, r) => src.kind === 'lookup' && tokenOfRow.set(r, chain[src.depth - 1]!));
    const embeds = new Float32Array(b.rows * C);
    b.source.forEach((src, r) => {
      const row = src.kind === 'prompt' ? adapter.row(src.prompt, src.virtual) : this.model.embed([tokenOfRow.get(r)!]);
      embeds.set(row, r * C);
    });
    const mask = new Uint8Array(b.rows * S);
    for (let r = 0; r < b.rows; r++) {
      mask.fill(1, r * S, r * S + P);
      mask.set(b.mask.subarray(r * b.rows, (r + 1) * b.rows), r * S + P);
    }
    const out = await this.model.forward({ embeds, positions: Array.from(b.positionOffset, (o) => P + o), mask, cache: this.cache });

    // Verification sees the tree's nodes in row order; node k's parent is found from the mask's
    // ancestry via the retrieval paths.
    const nodeOfRow = new Map<number, number>();
    const nodes: CandidateNode[] = [];
    const rowOfNode: number[] = [];
    for (const path of b.retrievePaths) {
      path.forEach((row, depth) => {
        if (nodeOfRow.has(row)) return;
        nodeOfRow.set(row, nodes.length);
        rowOfNode.push(row);
        nodes.push({ parent: depth === 0 ? 0 : nodeOfRow.get(path[depth - 1]!)!, token: tokenOfRow.get(row)! });
      });
    }
    if (nodes.length === 0) {
      nodeOfRow.set(0, 0);
      rowOfNode.push(0);
      nodes.push({ parent: 0, token: root });
    }
    const logitsOf = (node: number) => out.logits.subarray(rowOfNode[node]! * this.V, (rowOfNode[node]! + 1) * this.V);
    const verdict = this.verify(nodes, logitsOf);

    const acceptedRows = verdict.acceptedNodes.map((n) => rowOfNode[n]!);
    this.cache.append(out.keys, out.values, acceptedRows);
    const lastRow = acceptedRows[acceptedRows.length - 1]!;
    const lastNode = b.source[lastRow]!.node;
    const nextGuesses = this.guessLists(promptLogits(out.logits, b.promptRows[lastNode]!, this.V));
    const accepted = verdict.acceptedNodes.slice(1).map((n) => nodes[n]!.token);
    if (this.lookup) {
      this.lookup.context.push(root, ...accepted);
      if (chain.length > 0) this.lookup.length.update(commonPrefix(chain, accepted), chain.length);
    }
    const tokens = [...accepted, verdict.bonusToken];
    return { verdict, tokens, logits: verdict.acceptedNodes.map(logitsOf), guesses: nextGuesses };
  }

  private verify(nodes: CandidateNode[], logitsOf: (node: number) => Float32Array): Verdict {
    const { sampler } = this.o;
    if (sampler.greedy) return verifyGreedy(nodes, logitsOf);
    if (this.o.verification === 'typical') return verifyTypical(nodes, logitsOf, { temperature: sampler.options.temperature }, sampler.rng);
    return verifyRejection(nodes, logitsOf, sampler.options, sampler.rng);
  }
}

/** PPD decoding as a token stream: prefill yields [first token], each step its accepted tokens. */
export async function* ppdDecode(model: LlamaModel, promptIds: number[], o: PpdOptions): TokenStream {
  const decoder = new PpdDecoder(model, o);
  const first = await decoder.prefill(promptIds);
  let root = o.sampler.sample(first.logits);
  let guesses = first.guesses;
  o.onStep?.(1);
  yield [root];
  for (;;) {
    const step = await decoder.step(root, guesses);
    o.onStep?.(step.tokens.length);
    yield step.tokens;
    root = step.tokens[step.tokens.length - 1]!;
    guesses = step.guesses;
  }
}
