/**
 * The tree builder: from a prompt-token accuracy table and a budget of input rows per step, the
 * dynamic tree set (one tree per number of guessing positions d = 0..N) that maximises the
 * expected tokens per step. Pure arithmetic on small arrays; no model, no I/O. docs/TREES.md
 * explains the objective at more length.
 *
 * Shape legend (docs/ARCHITECTURE.md): N = prompt tokens (guessing positions), Vt = virtual
 * tokens per prompt token, M = tree nodes (node 0 is the root, then M − 1 candidates); k is a
 * guess's rank, below maxRank (the ranks considered per position).
 *
 * acc[i][k] (i < N, k < maxRank) = P(the true token at depth i+1 is exactly the k-th guess). A node's
 * path probability is the product of acc along its path; it is accepted with that probability.
 *
 * The objective. Steps form a Markov chain over d, the number of prompt tokens the previous
 * accepted node carried: step state d uses tree T_d, yields τ(T_d) = 1 + Σ p(node) tokens on
 * average, and ends at node x with probability e(x) = p(x accepted) − Σ p(child accepted), which
 * moves the chain to state m_x (prompt tokens attached to x). The quantity to maximise is the
 * chain's long-run mean tokens per step g, the number §8's hardware calibration divides by the
 * step latency. That is an average-reward Markov decision problem, solved by policy iteration:
 * - evaluate: for the current trees solve g + h(d) = τ(T_d) + Σ_x e(x) h(m_x), h(N) = 0 (the
 *   restart below scales the sum by 1 − RESTART). The
 *   relative value h(m) is the total extra tokens, over all later steps, of entering state m;
 *   it is PPD.md's f(m), made exact (f(m) = τ(T_m) only looks one step ahead);
 * - improve: for each d pick the tree maximising τ(T) + Σ_x e(x) h(m_x) (below), keeping the
 *   current tree unless the new one is strictly better, so g never decreases and the loop ends.
 * Initial values: h(m) = τ of the largest candidate-only tree of depth m, the one-step estimate.
 *
 * The tree for one state d under values h: candidates are the c most probable paths of depth
 * <= d (for c = 0 .. budget−1); the remaining rows hold floor((n − 1 − c) / Vt) prompt tokens,
 * allocated by PPD.md §5's greedy pruning: start with N on every node, repeatedly remove the
 * prompt token whose loss e(x) (h(m) − h(m−1)) is least. The split c is the one with the highest
 * τ(T) + Σ e(x) h(m_x), i.e. tokens from this step plus the worth of the states it leads to.
 *
 * A generation's first step always has N guess lists (the prefill ran N prompt tokens), and a
 * generation ends after some hundreds of steps. The evaluation models that as a restart to state
 * N with probability RESTART per step: it keeps the chain single-class when a degenerate table
 * (a guess that is always right) would leave several closed loops; its effect on g is of order
 * RESTART.
 */
import { InputError } from '../errors.ts';
import type { AttentionVariant } from './prompt-mask.ts';
import { comparePaths, TREE_SCHEMA, TREE_SET_SCHEMA, validateTreeSet, type PpdTree, type PpdTreeSet } from './tree.ts';

/** Probability that a step is a generation's last (the next one starts in state N); see the header. */
export const RESTART = 1e-3;
/** Improvements smaller than this are rounding, not improvements. */
const EPS = 1e-12;
const MAX_POLICY_ITERATIONS = 100;

export interface BuildOptions {
  /** n: input rows per step (root + candidates + prompt rows × Vt); >= 1. */
  budget: number;
  /** N: guessing positions = prompt tokens; defaults to acc.length and must equal it. */
  promptTokens?: number;
  /** Vt: virtual tokens per prompt token (default 1). */
  virtualTokens?: number;
  /** Ranks considered per position (default: the table's width). */
  maxRank?: number;
  /** Recorded in the set: the adapter's attention variant (default 'ensemble'). */
  attention?: AttentionVariant;
  /** Recorded in the set: where the table came from. */
  accuracySource?: string;
}

export interface PathCandidate {
  path: number[];
  probability: number;
}

// ---------------------------------------------------------------------------------------------
// Pure helpers

/** Π acc[k][path[k]]: the probability that every guess on the path is right. */
export function pathProbability(acc: readonly (readonly number[])[], path: readonly number[]): number {
  return path.reduce((p, rank, k) => p * (acc[k]![rank] ?? 0), 1);
}

/** τ = 1 + Σ candidate probabilities: the expected accepted length (the root always counts). */
export function expectedAcceptedLength(probabilities: Iterable<number>): number {
  let tau = 1;
  for (const p of probabilities) tau += p;
  return tau;
}

/** Orders candidates by probability, then BFS order: parents always come before children. */
function byProbability(a: PathCandidate, b: PathCandidate): number {
  return b.probability - a.probability || comparePaths(a.path, b.path);
}

/**
 * The `count` most probable paths of depth 1..depth with ranks < maxRank and probability > 0,
 * most probable first. Every prefix of the result is a tree: a child is never more probable
 * than its parent, and ties put the parent first.
 */
export function topPaths(acc: readonly (readonly number[])[], depth: number, count: number, maxRank: number): PathCandidate[] {
  let kept: PathCandidate[] = [];
  let frontier: PathCandidate[] = [{ path: [], probability: 1 }];
  // Level by level: the children of dropped nodes are no more probable than anything kept.
  for (let k = 0; k < depth && frontier.length > 0; k++) {
    const children: PathCandidate[] = [];
    const ranks = Math.min(maxRank, acc[k]!.length);
    for (const parent of frontier) {
      for (let r = 0; r < ranks; r++) {
        const probability = parent.probability * acc[k]![r]!;
        if (probability > 0) children.push({ path: [...parent.path, r], probability });
      }
    }
    kept = [...kept, ...children].sort(byProbability).slice(0, count);
    frontier = kept.filter((c) => c.path.length === k + 1);
  }
  return kept;
}

/**
 * [M] end probabilities: e[0] for the root, e[1 + i] for candidates[i]; e(x) = p(x accepted)
 * − Σ p(child accepted), the probability that the accepted path ends at x. They sum to 1.
 * `candidates` must form a tree with the root (every parent present).
 */
export function endProbabilities(candidates: readonly PathCandidate[]): Float64Array {
  const index = new Map<string, number>([['', 0]]);
  candidates.forEach((c, i) => index.set(c.path.join(','), i + 1));
  const end = new Float64Array(candidates.length + 1);
  end[0] = 1;
  candidates.forEach((c, i) => (end[i + 1]! += c.probability));
  for (const c of candidates) {
    const parent = index.get(c.path.slice(0, -1).join(','));
    if (parent === undefined) throw new InputError(`path ${JSON.stringify(c.path)} has no parent among the candidates`);
    end[parent]! -= c.probability;
  }
  return end;
}

/** Σ e(x) value[m_x]: the worth of the states the step can lead to. */
export function allocationValue(end: ArrayLike<number>, prompts: ArrayLike<number>, value: ArrayLike<number>): number {
  let sum = 0;
  for (let x = 0; x < end.length; x++) sum += end[x]! * value[prompts[x]!]!;
  return sum;
}

/**
 * PPD.md §5's greedy pruning. Starts with N prompt tokens on every node and removes one at a
 * time, always where the loss e(x) (value[m] − value[m−1]) is least, until at most `capacity`
 * remain; then goes on removing while the least loss is <= 0 (a prompt token worth nothing, e.g.
 * on a node where the accepted path never ends, is not worth its Vt rows). Ties go to the node
 * holding more prompt tokens, then to the later node. Returns [M] prompt tokens per node.
 * Optimal when value is concave (allocatePromptsExhaustive is the check).
 * end: [M] end probabilities; value: [N+1], value[m] = worth of a next step with m guess lists.
 */
export function allocatePrompts(end: ArrayLike<number>, value: ArrayLike<number>, promptTokens: number, capacity: number): Int32Array {
  const M = end.length;
  const prompts = new Int32Array(M).fill(promptTokens);
  const heap = new RemovalHeap();
  const loss = (x: number, m: number) => end[x]! * (value[m]! - value[m - 1]!);
  if (promptTokens > 0) for (let x = 0; x < M; x++) heap.push({ loss: loss(x, promptTokens), prompts: promptTokens, node: x });
  for (let total = M * promptTokens; heap.size > 0 && (total > capacity || heap.peek().loss <= 0); total--) {
    const { node } = heap.pop();
    const m = --prompts[node]!;
    if (m > 0) heap.push({ loss: loss(node, m), prompts: m, node });
  }
  return prompts;
}

/** The naive twin of allocatePrompts: the best of every allocation of at most `capacity` tokens. */
export function allocatePromptsExhaustive(end: ArrayLike<number>, value: ArrayLike<number>, promptTokens: number, capacity: number): Int32Array {
  const M = end.length;
  let best = new Int32Array(M);
  let bestValue = -Infinity;
  const current = new Int32Array(M);
  const visit = (x: number, left: number): void => {
    if (x === M) {
      const v = allocationValue(end, current, value);
      if (v > bestValue) [bestValue, best] = [v, current.slice()];
      return;
    }
    for (let m = 0; m <= Math.min(promptTokens, left); m++) {
      current[x] = m;
      visit(x + 1, left - m);
    }
  };
  visit(0, Math.max(0, capacity));
  return best;
}

interface Removal {
  loss: number;
  prompts: number;
  node: number;
}

/** Min-heap of removals, ordered as allocatePrompts documents. */
class RemovalHeap {
  private items: Removal[] = [];

  get size(): number {
    return this.items.length;
  }

  peek(): Removal {
    return this.items[0]!;
  }

  private before(a: Removal, b: Removal): boolean {
    if (a.loss !== b.loss) return a.loss < b.loss;
    if (a.prompts !== b.prompts) return a.prompts > b.prompts;
    return a.node > b.node;
  }

  push(item: Removal): void {
    const items = this.items;
    let i = items.push(item) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(items[i]!, items[parent]!)) break;
      [items[i], items[parent]] = [items[parent]!, items[i]!];
      i = parent;
    }
  }

  pop(): Removal {
    const items = this.items;
    const top = items[0]!;
    const last = items.pop()!;
    if (items.length > 0) {
      items[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let min = i;
        if (l < items.length && this.before(items[l]!, items[min]!)) min = l;
        if (r < items.length && this.before(items[r]!, items[min]!)) min = r;
        if (min === i) break;
        [items[i], items[min]] = [items[min]!, items[i]!];
        i = min;
      }
    }
    return top;
  }
}

// ---------------------------------------------------------------------------------------------
// One tree for one state, and the policy iteration over all states

interface StateTree {
  candidates: PathCandidate[]; // [M − 1], BFS order
  prompts: Int32Array; // [M]
  end: Float64Array; // [M]
  tau: number;
}

/** τ(T) + Σ e(x) worth[m_x]: this step's tokens plus the worth of where it leads. */
function treeValue(t: StateTree, worth: ArrayLike<number>): number {
  return t.tau + allocationValue(t.end, t.prompts, worth);
}

/** The best tree for one state: every split of the budget between c candidates and prompt rows, candidates by probability, greedy prompts. */
function bestStateTree(ranked: readonly PathCandidate[], worth: ArrayLike<number>, budget: number, N: number, Vt: number): StateTree {
  let best: StateTree | undefined;
  let bestValue = -Infinity;
  for (let c = 0; c <= Math.min(budget - 1, ranked.length); c++) {
    const candidates = ranked.slice(0, c);
    const end = endProbabilities(candidates);
    const prompts = allocatePrompts(end, worth, N, Math.floor((budget - 1 - c) / Vt));
    const tree: StateTree = { candidates, prompts, end, tau: expectedAcceptedLength(candidates.map((c) => c.probability)) };
    const value = treeValue(tree, worth);
    if (value > bestValue + EPS) [best, bestValue] = [tree, value];
  }
  return best!;
}

/**
 * Solves g + h(d) − Σ_m P[d][m] h(m) = r(d) with h(N) = 0 (unknowns g, h(0..N−1)); P already
 * includes the restart. Returns g and h [N+1].
 */
function evaluatePolicy(trees: readonly StateTree[]): { g: number; h: Float64Array } {
  const N = trees.length - 1;
  const S = N + 1;
  // Unknown k: k < N is h(k), k = N is g. Row d is state d's equation. A: [S, S + 1] augmented.
  const A = Array.from({ length: S }, () => new Float64Array(S + 1));
  trees.forEach((t, d) => {
    const row = A[d]!;
    row[N] = 1; // g
    if (d < N) row[d]! += 1;
    t.end.forEach((e, x) => {
      const m = t.prompts[x]!;
      if (m < N) row[m]! -= (1 - RESTART) * e;
    });
    row[S] = t.tau;
  });
  // Gaussian elimination with partial pivoting; S <= N + 1 is tiny.
  for (let col = 0; col < S; col++) {
    let pivot = col;
    for (let r = col + 1; r < S; r++) if (Math.abs(A[r]![col]!) > Math.abs(A[pivot]![col]!)) pivot = r;
    [A[col], A[pivot]] = [A[pivot]!, A[col]!];
    for (let r = 0; r < S; r++) {
      if (r === col) continue;
      const f = A[r]![col]! / A[col]![col]!;
      for (let c = col; c <= S; c++) A[r]![c]! -= f * A[col]![c]!;
    }
  }
  const h = new Float64Array(S);
  for (let k = 0; k < N; k++) h[k] = A[k]![S]! / A[k]![k]!;
  return { g: A[N]![S]! / A[N]![N]!, h };
}

function checkTable(acc: readonly (readonly number[])[], N: number): void {
  if (acc.length !== N) throw new InputError(`accuracy table has ${acc.length} rows but promptTokens is ${N}`);
  acc.forEach((row, i) => {
    if (row.length === 0) throw new InputError(`accuracy table row ${i} is empty`);
    row.forEach((p, k) => {
      if (!(p >= 0 && p <= 1)) throw new InputError(`accuracy table [${i}][${k}] must be a probability in 0..1, got ${p}`);
    });
    const sum = row.reduce((a, b) => a + b, 0);
    if (sum > 1 + 1e-6) throw new InputError(`accuracy table row ${i} sums to ${sum}, over 1`);
  });
}

function positiveInt(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new InputError(`${name} must be an integer >= 1, got ${value}`);
  return value;
}

/**
 * A guess of the accuracy table for an adapter that comes without one (the reference
 * implementation's): the top guess right 40 % of the time at depth 1, each further depth 30 %
 * less often, each next rank half as often (10 ranks, the reference's TOPK). A placeholder that
 * makes sensible small trees, never a measurement; `ppd eval-prompts` measures the real table.
 */
export function priorAccuracyTable(promptTokens: number): number[][] {
  return Array.from({ length: promptTokens }, (_, i) => Array.from({ length: 10 }, (_, k) => 0.4 * 0.5 ** k * 0.7 ** i));
}

/**
 * τ of each tree and the long-run tokens per step of a tree set made elsewhere (the reference
 * implementation's trees): the evaluation step of the policy iteration above. trees[d] holds
 * candidates with their path probabilities and prompts [M] for the root, then candidates.
 */
export function evaluateTreeSet(trees: readonly { candidates: readonly PathCandidate[]; prompts: Int32Array }[]): { tau: number[]; tokensPerStep: number } {
  const states: StateTree[] = trees.map((t) => ({
    candidates: [...t.candidates],
    prompts: t.prompts,
    end: endProbabilities(t.candidates),
    tau: expectedAcceptedLength(t.candidates.map((c) => c.probability)),
  }));
  return { tau: states.map((s) => s.tau), tokensPerStep: evaluatePolicy(states).g };
}

/** The dynamic tree set for `acc` under `options.budget` rows per step (see the file header). */
export function buildTreeSet(acc: readonly (readonly number[])[], options: BuildOptions): PpdTreeSet {
  const N = options.promptTokens ?? acc.length;
  const budget = positiveInt('budget', options.budget);
  const Vt = positiveInt('virtualTokens', options.virtualTokens ?? 1);
  checkTable(acc, N);
  const maxRank = positiveInt('maxRank', options.maxRank ?? Math.max(1, ...acc.map((row) => row.length)));

  const ranked = Array.from({ length: N + 1 }, (_, d) => topPaths(acc, d, budget - 1, maxRank));
  // worth[m]: what entering state m adds, (1 − RESTART) h(m) (a restart enters N, and h(N) = 0).
  let worth: Float64Array = Float64Array.from(ranked, (r) => expectedAcceptedLength(r.map((c) => c.probability)));
  const trees = ranked.map((r) => bestStateTree(r, worth, budget, N, Vt));
  let { g, h } = evaluatePolicy(trees);
  for (let iteration = 0; iteration < MAX_POLICY_ITERATIONS; iteration++) {
    worth = h.map((v) => (1 - RESTART) * v);
    let changed = false;
    ranked.forEach((r, d) => {
      const candidate = bestStateTree(r, worth, budget, N, Vt);
      if (treeValue(candidate, worth) > treeValue(trees[d]!, worth) + EPS) [trees[d], changed] = [candidate, true];
    });
    if (!changed) break;
    ({ g, h } = evaluatePolicy(trees));
  }

  return validateTreeSet({
    schema: TREE_SET_SCHEMA,
    budget,
    promptTokens: N,
    virtualTokens: Vt,
    attention: options.attention ?? 'ensemble',
    topK: maxRank,
    accuracySource: options.accuracySource ?? 'unspecified',
    expectedAcceptedLength: trees.map((t) => t.tau),
    expectedTokensPerStep: g,
    trees: trees.map((t, d) => toTree(t, d, maxRank)),
  });
}

function toTree(t: StateTree, guessDepth: number, topK: number): PpdTree {
  const order = t.candidates.map((_, i) => i).sort((a, b) => comparePaths(t.candidates[a]!.path, t.candidates[b]!.path));
  return {
    schema: TREE_SCHEMA,
    guessDepth,
    topK,
    root: { prompts: t.prompts[0]! },
    candidates: order.map((i) => ({ path: [...t.candidates[i]!.path], prompts: t.prompts[i + 1]! })),
  };
}

/**
 * The tree set of budget 1 for an adapter's shape: the root alone, no guess and no prompt token
 * in any step, whatever the accuracy. PPD decodes with it when only a drafted chain (context
 * lookup, n-gram table) guesses.
 */
export function rootOnlyTreeSet(shape: { promptTokens: number; virtualTokens: number; config: { attention: AttentionVariant } }): PpdTreeSet {
  const { promptTokens, virtualTokens } = shape;
  return buildTreeSet(Array.from({ length: promptTokens }, () => [0]), { budget: 1, promptTokens, virtualTokens, attention: shape.config.attention });
}
