/**
 * Parallel Prompt Decoding as a token stream (PPD.md section 6), interchangeable with plain
 * autoregressive decoding: same model, same `Generation` on top, several tokens per forward.
 *
 * One step reads as Medusa's loop, five calls:
 *   propose     the tree for the d guess lists the last step left (plus a context-lookup chain):
 *               which token fills each row;
 *   buildInput  the step's rows: embeddings, positions, and which rows each row sees;
 *   forward     one model forward over them (`forwardStep`; a scheduler may run it itself);
 *   verify      greedy, typical or distribution-preserving rejection over the tree;
 *   keep        the accepted rows' keys/values into the cache, the next guess lists from the
 *               prompt tokens of the last accepted node (whose count picks the next tree).
 * What does not change from step to step (rows, mask block, position offsets, the verifiers'
 * node order and parents, the prompt rows' embeddings) is compiled once per tree.
 *
 * Stream shape: the prefill yields the first token; every step yields the accepted candidates
 * followed by the model's own next token (the bonus), which is the next step's root.
 *
 * Shape legend: R = rows of one step, C = hidden size, V = vocabulary, P = cached rows,
 * N = prompt tokens, Vt = virtual tokens per prompt token, d = guess lists of a step.
 */
import { InputError } from '../errors.ts';
import { newCache, prefillWith, type TokenStream } from '../generate/autoregressive.ts';
import type { KVCache } from '../model/kv-cache.ts';
import { maskOverCache, type ForwardOutput, type LlamaModel } from '../model/llama-model.ts';
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

/**
 * The rows one sequence adds to a forward, and the cache they attend to. A batching scheduler
 * can combine several sequences' inputs into one forward; `forwardStep` runs one alone.
 */
export interface StepInput {
  /** [R, C] */
  embeds: Float32Array;
  /** [R] absolute positions (tree rows share them). */
  positions: Int32Array;
  /** [R, R] 0/1: which of the step's rows each row sees; every row also sees the whole cache. */
  block: Uint8Array;
  /** The sequence's cache (P rows); the forward reads it and never changes it. */
  cache: KVCache;
}

/** One forward over a step's rows: logits [R, V] and per layer keys/values [R, K, D]. */
export function forwardStep(model: LlamaModel, input: StepInput): Promise<ForwardOutput> {
  const R = input.positions.length;
  return model.forward({ embeds: input.embeds, positions: input.positions, mask: maskOverCache(input.block, R, input.cache.length), cache: input.cache });
}

/** A tree compiled for this adapter: its buffers and the step input's fixed part. */
interface CompiledStep {
  buffers: TreeBuffers;
  /** [R, C] the prompt rows' embeddings in place; token rows are filled per step. */
  embedsTemplate: Float32Array;
  /** Rows that take a token (root, candidates, lookup chain), in row order. */
  tokenRows: Int32Array;
}

/** What `propose` decided for one step. */
export interface Proposal {
  readonly step: CompiledStep;
  /** [R] the token of each row; -1 for prompt rows. */
  readonly tokens: Int32Array;
  /** The context-lookup chain (its rows follow the tree's). */
  readonly chain: number[];
}

/** What one step produced. */
export interface StepResult {
  verdict: Verdict;
  /** The accepted candidates' tokens, then the bonus token (the next root). */
  tokens: number[];
  /** [V] views: the model's output at each accepted node's row (the row predicting tokens[i]). */
  logits: Float32Array[];
  /** The next step's guess lists, from the prompt tokens of the last accepted node. */
  guesses: number[][];
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
 * One sequence's PPD state (its cache, its lookup context) and its moves: `prefill`, then `step`
 * (propose, buildInput, forward, verify, keep; each also callable alone). Exported so that a
 * speculative drafter (spec/drafter.ts) can drive the same steps and roll back between them.
 */
export class PpdDecoder {
  /** One per tree of the set: steps[d] is used with d guess lists. */
  private readonly steps: CompiledStep[];
  /** steps[d] with a lookup chain of length l, by `${d}:${l}`, compiled on first use. */
  private readonly chainSteps = new Map<string, CompiledStep>();
  private readonly cache: KVCache;
  /** The cached tokens (for context lookup) and the lookup's adaptive length; absent without lookup. */
  private readonly lookup?: { context: ContextLookup; length: DraftLength };

  constructor(
    private readonly model: LlamaModel,
    private readonly o: PpdOptions,
  ) {
    checkTrees(o.adapter, o.trees);
    const { promptTokens: N, virtualTokens, attention } = o.adapter.config;
    this.steps = o.trees.trees.map((tree) => this.compile(compileTree(tree, { promptTokens: N, virtualTokens, attention })));
    this.cache = newCache(model);
    if (o.lookup !== undefined && !(Number.isInteger(o.lookup) && o.lookup >= 0)) throw new InputError(`lookup must be an integer >= 0 (most tokens per step), got ${o.lookup}`);
    if (o.lookup !== undefined && o.lookup > 0) this.lookup = { context: new ContextLookup(), length: new DraftLength(o.lookup) };
  }

  /** Drops every cached row at index >= length (rolling back to an accepted prefix). */
  truncate(length: number): void {
    this.cache.truncate(length);
    this.lookup?.context.truncate(length);
  }

  /**
   * The prompt through the chunked prefill (generate/autoregressive.ts), its last slice carrying
   * the N prompt tokens' rows, which see every prompt token and each other by the adapter's
   * attention. Only the prompt's keys/values are kept. Returns the last prompt row's logits and
   * the first guess lists.
   */
  async prefill(ids: number[]): Promise<{ logits: Float32Array; guesses: number[][] }> {
    const { adapter } = this.o;
    const { promptTokens: N, virtualTokens: Vt } = adapter;
    const { logits, trailingLogits } = await prefillWith(this.model, ids, this.cache, {
      embeds: adapter.embeddings,
      positionOffsets: Array.from({ length: N * Vt }, (_, r) => Math.floor(r / Vt)), // prompt token i sits at position L + i (PPD.md §2)
      visibility: promptVisibility(N, Vt, adapter.config.attention),
    });
    this.lookup?.context.push(...ids);
    const promptRows = Array.from({ length: N }, (_, i) => Array.from({ length: Vt }, (_, j) => i * Vt + j));
    return { logits, guesses: this.guessLists(promptLogits(trailingLogits, promptRows, this.model.config.vocabSize)) };
  }

  /** One tree step from `root` with `guesses` (guesses.length = d): the five calls. */
  async step(root: number, guesses: number[][]): Promise<StepResult> {
    const proposal = this.propose(root, guesses);
    const out = await forwardStep(this.model, this.buildInput(proposal));
    const verdict = this.verify(proposal, out.logits);
    return this.keep(proposal, verdict, out);
  }

  /** Which tree (the one for d = guesses.length), which lookup chain, and the token of every row. */
  propose(root: number, guesses: number[][]): Proposal {
    const chain = this.lookup ? this.lookup.context.propose(root, this.lookup.length.current) : [];
    const step = this.stepFor(guesses.length, chain.length);
    const b = step.buffers;
    const tokens = new Int32Array(b.rows).fill(-1);
    tokens[0] = root;
    for (const g of b.guesses) tokens[g.row] = guesses[g.depth - 1]![g.rank]!;
    b.source.forEach((src, r) => src.kind === 'lookup' && (tokens[r] = chain[src.depth - 1]!));
    return { step, tokens, chain };
  }

  /** The step's rows: token and prompt-row embeddings, positions after the cache, the tree's mask block. */
  buildInput({ step, tokens }: Proposal): StepInput {
    const C = this.model.config.hiddenSize;
    const embeds = step.embedsTemplate.slice();
    for (const row of step.tokenRows) embeds.set(this.model.embed([tokens[row]!]), row * C);
    const P = this.cache.length;
    const positions = Int32Array.from(step.buffers.positionOffset, (offset) => P + offset);
    return { embeds, positions, block: step.buffers.mask, cache: this.cache };
  }

  /** The accepted path and bonus token, from this sequence's logits [R, V]. */
  verify({ step, tokens }: Proposal, logits: Float32Array): Verdict {
    const { verifyRows, verifyParents } = step.buffers;
    const nodes: CandidateNode[] = Array.from(verifyRows, (row, k) => ({ parent: verifyParents[k]!, token: tokens[row]! }));
    const V = this.model.config.vocabSize;
    const logitsOf = (node: number) => logits.subarray(verifyRows[node]! * V, (verifyRows[node]! + 1) * V);
    const { sampler } = this.o;
    if (sampler.greedy) return verifyGreedy(nodes, logitsOf);
    if (this.o.verification === 'typical') return verifyTypical(nodes, logitsOf, { temperature: sampler.options.temperature }, sampler.rng);
    return verifyRejection(nodes, logitsOf, sampler.options, sampler.rng);
  }

  /**
   * Keeps the accepted rows' keys/values (everything else of the step is dropped), feeds the
   * lookup, and takes the next guess lists from the last accepted node's prompt tokens. `out` is
   * this sequence's slice of the forward: logits [R, V], keys/values per layer [R, K, D].
   */
  keep(proposal: Proposal, verdict: Verdict, out: ForwardOutput): StepResult {
    const b = proposal.step.buffers;
    const V = this.model.config.vocabSize;
    const acceptedRows = verdict.acceptedNodes.map((node) => b.verifyRows[node]!);
    this.cache.append(out.keys, out.values, acceptedRows);
    const lastNode = b.source[acceptedRows.at(-1)!]!.node;
    const guesses = this.guessLists(promptLogits(out.logits, b.promptRows[lastNode]!, V));
    const accepted = acceptedRows.slice(1).map((row) => proposal.tokens[row]!);
    if (this.lookup) {
      this.lookup.context.push(proposal.tokens[0]!, ...accepted);
      if (proposal.chain.length > 0) this.lookup.length.update(commonPrefix(proposal.chain, accepted), proposal.chain.length);
    }
    const logits = acceptedRows.map((row) => out.logits.subarray(row * V, (row + 1) * V));
    return { verdict, tokens: [...accepted, verdict.bonusToken], logits, guesses };
  }

  /** The compiled step for d guess lists and a lookup chain of `chain` tokens. */
  private stepFor(d: number, chain: number): CompiledStep {
    if (chain === 0) return this.steps[d]!;
    const key = `${d}:${chain}`;
    let step = this.chainSteps.get(key);
    if (step === undefined) this.chainSteps.set(key, (step = this.compile(withLookupChain(this.steps[d]!.buffers, chain))));
    return step;
  }

  /** The fixed part of a step's input for `buffers`: prompt-row embeddings and the rows that take tokens. */
  private compile(buffers: TreeBuffers): CompiledStep {
    const C = this.model.config.hiddenSize;
    const embedsTemplate = new Float32Array(buffers.rows * C);
    const tokenRows: number[] = [];
    buffers.source.forEach((src, r) => {
      if (src.kind === 'prompt') embedsTemplate.set(this.o.adapter.row(src.prompt, src.virtual), r * C);
      else tokenRows.push(r);
    });
    return { buffers, embedsTemplate, tokenRows: Int32Array.from(tokenRows) };
  }

  /** Guess lists for the next step from the averaged logits of `count` prompt tokens. */
  private guessLists(perToken: Float32Array[]): number[][] {
    return perToken.map((logits) => topKIndices(logits, this.o.trees.topK));
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
