/**
 * Parallel Prompt Decoding as a token stream (PPD.md section 6), interchangeable with plain
 * autoregressive decoding: same model, same `Generation` on top, several tokens per forward.
 *
 * One step reads as Medusa's loop, five calls:
 *   propose     the tree for the d guess lists the last step left (plus a chain drafted by the
 *               context lookup or the static n-gram table, draft.ts), within a row budget:
 *               which token fills each row;
 *   buildInput  the step's rows (decode/rows.ts): embeddings, positions after the cache, and
 *               which rows each row sees;
 *   forward     one model forward over them (`forwardRows`; a scheduler may batch it);
 *   verify      greedy, coupled (plain sampling's tokens), typical or rejection over the tree;
 *   keep        the accepted rows' keys/values into the cache, the next guess lists from the
 *               prompt tokens of the last accepted node (whose count picks the next tree).
 * What does not change from step to step (rows, mask block, position offsets, the verifiers'
 * node order and parents, the prompt rows' embeddings) is compiled once per tree. The prefill is
 * the chunked prefill's plans (decode/rows.ts) with the prompt-token rows in the last one.
 *
 * Stream shape: the prefill yields the first token; every step yields the accepted candidates
 * followed by the model's own next token (the bonus), which is the next step's root.
 *
 * Shape legend: R = rows of one step, C = hidden size, V = vocabulary, N = prompt tokens,
 * Vt = virtual tokens per prompt token, d = guess lists of a step.
 */
import { InputError, ModelError } from '../errors.ts';
import { promptHeadFeeds, type PromptHeadFeeds } from '../model/prompt-head.ts';
import { newCache, type TokenStream } from '../decode/autoregressive.ts';
import { forwardRows, prefillChunk, type PrefillChunk, type RowsPlan } from '../decode/rows.ts';
import type { SequenceCache } from '../model/kv-cache.ts';
import type { ForwardOutput, LlamaModel } from '../model/llama-model.ts';
import { Sampler, topKIndices } from '../sampling/sampler.ts';
import type { PromptAdapter } from './adapter.ts';
import { promptVisibility } from './prompt-mask.ts';
import { TREE_SCHEMA, type PpdTree, type PpdTreeSet } from './tree.ts';
import { compileTree, withDraftChain, type TreeBuffers } from './tree-buffers.ts';
import { ChainDraft, type Draft, type DraftOutcome } from './draft.ts';
import type { DraftThresholds, NgramTable } from './ngram-table.ts';
import { verifyCoupled, verifyGreedy, verifyRejection, verifyTypical, type CandidateNode, type Verdict } from './verify.ts';

export type Verification = 'greedy' | 'coupled' | 'typical' | 'rejection';

export interface PpdOptions {
  adapter: PromptAdapter;
  trees: PpdTreeSet;
  /** Sampling options (temperature 0 = greedy) and the sampler's seeded Rng. */
  sampler: Sampler;
  /** How guesses are accepted when sampling (default coupled); greedy sampling always verifies greedily. */
  verification?: Exclude<Verification, 'greedy'>;
  /** Called after each step with the number of tokens it produced (for stats and the UI). */
  onStep?: (accepted: number) => void;
  /**
   * Most tokens a context lookup (lookup.ts) may add per step as a chain of candidates beside
   * the tree; 0 or absent: none. How many it proposes adapts within 1..lookup to how many the
   * model has been accepting (DraftLength).
   */
  lookup?: number;
  /**
   * A static n-gram table (ngram-table.ts) that drafts the chain where it knows a longer context
   * than the context lookup matched (draft.ts), and the most tokens it may propose per step
   * (adapting likewise); absent: none.
   */
  ngram?: { table: NgramTable; tokens: number; thresholds?: DraftThresholds };
  /** Called after each step whose chain was drafted, with how it fared (statistics). */
  onDraft?: (outcome: DraftOutcome) => void;
}

/**
 * An adapter head's layout for the graph, made once per head: every decoder of one adapter feeds
 * the same object, which is how a batched forward (decode/batch.ts) knows its sequences share one
 * head. (A head's weights do not change while it decodes; training makes no decoders.)
 */
const HEAD_FEEDS = new WeakMap<object, PromptHeadFeeds>();

/** A tree compiled for this adapter: its buffers and the step input's fixed part. */
interface CompiledStep {
  buffers: TreeBuffers;
  /** [R, C] the prompt rows' embeddings in place; token rows are filled per step. */
  embedsTemplate: Float32Array;
  /** Rows that take a token (root, candidates, drafted chain), in row order. */
  tokenRows: Int32Array;
  /** [R] each row's prompt token (for a prompt head), -1 for token rows. */
  promptIndex: Int8Array;
  /** [R] each prompt row's parent: the row of the tree node it is attached to (-1 for token rows). */
  promptParent: Int32Array;
  /** This step with a drafted chain of k tokens, by k, compiled on first use. */
  chains: Map<number, CompiledStep>;
}

/** What `propose` decided for one step. */
export interface Proposal {
  /** The compiled tree (and chain) the step runs; opaque to callers. */
  readonly step: CompiledStep;
  /** [R] the token of each row; -1 for prompt rows. */
  readonly tokens: Int32Array;
  /** The drafted chain (its rows follow the tree's) and its source. */
  readonly draft: Draft;
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
  /** How the drafted chain fared; absent when the step had none. */
  draft?: DraftOutcome;
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
 * One sequence's PPD state (its cache, its drafted chain's context) and its moves: `prefill`, then `step`
 * (propose, buildInput, forward, verify, keep; each also callable alone, so that a scheduler can
 * run the forward for several sequences at once). Also driven by the speculative drafter
 * (spec/drafter.ts), which rolls back between steps.
 */
export class PpdDecoder {
  /** One per tree of the set: steps[d] is used with d guess lists. */
  private readonly steps: CompiledStep[];
  /** The root alone, without prompt tokens (what a one-row budget allows), compiled on first use. */
  private bareRootStep?: CompiledStep;
  /**
   * The chain drafted beside the tree: the cached tokens, the sources' adaptive lengths, and the
   * record of chain tokens accepted and chains cut short (for stepOptions).
   */
  private readonly draft: ChainDraft;
  /** The adapter's prompt head laid out for the model's graph; absent for an adapter without one. */
  private readonly head?: PromptHeadFeeds;

  constructor(
    private readonly model: LlamaModel,
    private readonly o: PpdOptions,
    /** This sequence's keys/values (a fresh KVCache unless a scheduler brings its own store). */
    private readonly cache: SequenceCache = newCache(model),
  ) {
    checkTrees(o.adapter, o.trees);
    const { head, promptTokens: N } = o.adapter;
    if (head) {
      if (model.promptHeadTokens !== N) {
        throw new ModelError(`this adapter has a prompt head for ${N} prompt tokens, and the model was ${model.promptHeadTokens === undefined ? 'opened without one' : `opened for ${model.promptHeadTokens}`}: load the model with promptHead: ${N} (the CLI does so for --ppd)`);
      }
      let feeds = HEAD_FEEDS.get(head);
      if (!feeds) HEAD_FEEDS.set(head, (feeds = promptHeadFeeds(head.weight, head.bias, N, model.config.hiddenSize, head.parentWeight)));
      this.head = feeds;
    }
    this.steps = o.trees.trees.map((tree) => this.compile(compileTree(tree, this.shape)));
    this.draft = new ChainDraft(o);
  }

  /** Drops every cached row at index >= length (rolling back to an accepted prefix). */
  truncate(length: number): void {
    this.cache.truncate(length);
    if (this.draft.active) this.draft.truncate(length);
  }

  /**
   * The prompt through the chunked prefill, its last slice carrying the N prompt tokens' rows.
   * Returns the last prompt row's logits and the first guess lists.
   */
  async prefill(ids: number[]): Promise<{ logits: Float32Array; guesses: number[][] }> {
    for (let start = 0; ; ) {
      const chunk = this.planPrefill(ids, start);
      const first = this.keepPrefill(ids, chunk, await forwardRows(this.model, this.cache, chunk.rows));
      if (first) return first;
      start = chunk.end;
    }
  }

  /**
   * The slice of the prompt from `start` as rows (decode/rows.ts), at most `maxRows` prompt rows
   * (a scheduler's budget; default PREFILL_CHUNK); the last slice carries the prompt tokens'
   * rows, which see every prompt token and each other by the adapter's attention.
   */
  planPrefill(ids: readonly number[], start: number, maxRows?: number): PrefillChunk {
    const { adapter } = this.o;
    const { promptTokens: N, virtualTokens: Vt } = adapter;
    const trailing = {
      embeds: adapter.embeddings,
      positionOffsets: Array.from({ length: N * Vt }, (_, r) => Math.floor(r / Vt)), // prompt token i sits at position L + i (PPD.md §2)
      visibility: promptVisibility(N, Vt, adapter.config.attention),
      ...(this.head ? { promptHead: { feeds: this.head, rows: Int8Array.from({ length: N * Vt }, (_, r) => Math.floor(r / Vt)) } } : {}),
    };
    return prefillChunk(this.model, ids, start, trailing, maxRows);
  }

  /**
   * Keeps a prefill slice's prompt rows from `out` (this sequence's slice of the forward). After
   * the last slice, returns the last prompt row's logits ([V]) and the first guess lists.
   */
  keepPrefill(ids: readonly number[], chunk: PrefillChunk, out: ForwardOutput): { logits: Float32Array; guesses: number[][] } | undefined {
    const T = chunk.promptRows;
    this.cache.append(out.keys, out.values, Array.from({ length: T }, (_, i) => i));
    if (!chunk.last) return undefined;
    if (this.draft.active) this.draft.push(...ids);
    const V = this.model.config.vocabSize;
    const { promptTokens: N, virtualTokens: Vt } = this.o.adapter;
    const promptRows = Array.from({ length: N }, (_, i) => Array.from({ length: Vt }, (_, j) => T + i * Vt + j));
    return { logits: out.logits.slice((T - 1) * V, T * V), guesses: this.guessLists(promptLogits(out.logits, promptRows, V)) };
  }

  /** One tree step from `root` with `guesses` (guesses.length = d): the five calls. */
  async step(root: number, guesses: number[][]): Promise<StepResult> {
    const proposal = this.propose(root, guesses);
    const out = await forwardRows(this.model, this.cache, this.buildInput(proposal));
    const verdict = this.verify(proposal, out.logits);
    return this.keep(proposal, verdict, out);
  }

  /**
   * Which tree, which drafted chain, and the token of every row. The tree is the one for d =
   * guesses.length; with `maxRows` (a scheduler's row budget for this sequence), the largest
   * tree for d or fewer guess lists that fits, else the root alone (one row, no prompt tokens:
   * the next step then has no guesses), and a chain only in the rows left.
   */
  propose(root: number, guesses: number[][], maxRows = Infinity): Proposal {
    if (!(maxRows >= 1)) throw new InputError(`a step needs at least one row, got a budget of ${maxRows}`);
    let tree: CompiledStep | undefined;
    for (let d = guesses.length; d >= 0 && tree === undefined; d--) if (this.steps[d]!.buffers.rows <= maxRows) tree = this.steps[d]!;
    tree ??= this.bareRoot();
    const room = maxRows - tree.buffers.rows;
    const draft = this.draft.propose(root, room);
    const step = draft.tokens.length === 0 ? tree : this.withChain(tree, draft.tokens.length);
    const b = step.buffers;
    const tokens = new Int32Array(b.rows).fill(-1);
    tokens[0] = root;
    for (const g of b.guesses) tokens[g.row] = guesses[g.depth - 1]![g.rank]!;
    b.source.forEach((src, r) => src.kind === 'draft' && (tokens[r] = draft.tokens[src.depth - 1]!));
    return { step, tokens, draft };
  }

  /**
   * What a step from `root` with `guesses` yields at each row budget up to `maxRows`, for a batch
   * scheduler's row budget: the rows `propose` would use and the tokens the step is expected to
   * emit. A tree's expected tokens are the tree set's expected accepted length for its d (from the
   * accuracy table); a drafted chain (context lookup or n-gram table) of l tokens adds a + a² + ...
   * + a^l, with a the share of chain tokens this sequence has had accepted (a rejection ends a
   * chain; ChainDraft.acceptedShare, so a fresh sequence starts at 1/2). The two are added: where the tree and the chain
   * guess the same token this overstates a little.
   */
  stepOptions(root: number, guesses: number[][], maxRows: number): { rows: number; expectedTokens: number }[] {
    const available = this.draft.propose(root, Infinity).tokens.length;
    const a = this.draft.acceptedShare;
    const chainGain = (l: number) => (a === 1 ? l : (a * (1 - a ** l)) / (1 - a));
    const options: { rows: number; expectedTokens: number }[] = [];
    const largest = Math.max(...this.steps.map((step) => step.buffers.rows)) + available;
    for (let m = 1, used = 0; m <= Math.min(maxRows, largest); m++) {
      let d = guesses.length;
      while (d >= 0 && this.steps[d]!.buffers.rows > m) d--;
      const treeRows = d >= 0 ? this.steps[d]!.buffers.rows : 1;
      const treeTokens = d >= 0 ? this.o.trees.expectedAcceptedLength[d]! : 1;
      const chain = Math.min(m - treeRows, available);
      if (treeRows + chain <= used) continue; // this budget uses no more rows than a smaller one
      used = treeRows + chain;
      options.push({ rows: used, expectedTokens: treeTokens + chainGain(chain) });
    }
    return options;
  }

  /** The step's rows: token and prompt-row embeddings, positions after the cache, the tree's mask block. */
  buildInput({ step, tokens }: Proposal): RowsPlan {
    const C = this.model.config.hiddenSize;
    const embeds = step.embedsTemplate.slice();
    for (const row of step.tokenRows) embeds.set(this.model.embed([tokens[row]!]), row * C);
    const plan: RowsPlan = { embeds, positionOffsets: step.buffers.positionOffset, block: step.buffers.mask };
    if (this.head) plan.promptHead = { feeds: this.head, rows: step.promptIndex, parents: step.promptParent };
    return plan;
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
    if (this.o.verification === 'rejection') return verifyRejection(nodes, logitsOf, sampler.options, sampler.rng);
    const verdict = verifyCoupled(nodes, logitsOf, sampler.options, (depth) => sampler.uniform(depth));
    sampler.advance(verdict.acceptedNodes.length);
    return verdict;
  }

  /**
   * Keeps the accepted rows' keys/values (everything else of the step is dropped), feeds the
   * drafted chain's context, and takes the next guess lists from the last accepted node's prompt tokens. `out` is
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
    let draft: DraftOutcome | undefined;
    if (this.draft.active) {
      this.draft.push(proposal.tokens[0]!, ...accepted);
      draft = this.draft.record(proposal.draft, accepted);
      if (draft) this.o.onDraft?.(draft);
    }
    const logits = acceptedRows.map((row) => out.logits.subarray(row * V, (row + 1) * V));
    return { verdict, tokens: [...accepted, verdict.bonusToken], logits, guesses, ...(draft ? { draft } : {}) };
  }

  private get shape() {
    const { promptTokens, virtualTokens, attention } = this.o.adapter.config;
    return { promptTokens, virtualTokens, attention };
  }

  /** `tree` with a drafted chain of `chain` tokens. */
  private withChain(tree: CompiledStep, chain: number): CompiledStep {
    let step = tree.chains.get(chain);
    if (step === undefined) tree.chains.set(chain, (step = this.compile(withDraftChain(tree.buffers, chain))));
    return step;
  }

  private bareRoot(): CompiledStep {
    const root: PpdTree = { schema: TREE_SCHEMA, guessDepth: 0, topK: 1, root: { prompts: 0 }, candidates: [] };
    return (this.bareRootStep ??= this.compile(compileTree(root, this.shape)));
  }

  /** The fixed part of a step's input for `buffers`: prompt-row embeddings and the rows that take tokens. */
  private compile(buffers: TreeBuffers): CompiledStep {
    const C = this.model.config.hiddenSize;
    const embedsTemplate = new Float32Array(buffers.rows * C);
    const tokenRows: number[] = [];
    const promptIndex = new Int8Array(buffers.rows).fill(-1);
    const promptParent = new Int32Array(buffers.rows).fill(-1);
    buffers.source.forEach((src, r) => {
      if (src.kind === 'prompt') {
        embedsTemplate.set(this.o.adapter.row(src.prompt, src.virtual), r * C);
        promptIndex[r] = src.prompt;
        promptParent[r] = buffers.nodeRows[src.node]!;
      } else tokenRows.push(r);
    });
    return { buffers, embedsTemplate, tokenRows: Int32Array.from(tokenRows), promptIndex, promptParent, chains: new Map() };
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
