import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InputError } from '../src/errors.ts';
import { Rng } from '../src/sampling/rng.ts';
import { argmax, sampleFrom, samplingOptions, toProbabilities, type SamplingOptions } from '../src/sampling/sampler.ts';
import {
  typicalThreshold,
  verifyGreedy,
  verifyRejection,
  verifyTypical,
  type CandidateNode,
  type LogitsOf,
  type Verdict,
} from '../src/ppd/verify.ts';

// ---- helpers ------------------------------------------------------------------------------------

/** A tree from its root token and [parent, token] edges; node i+1 is edges[i]. */
function tree(rootToken: number, edges: [number, number][]): CandidateNode[] {
  return [{ parent: -1, token: rootToken }, ...edges.map(([parent, token]) => ({ parent, token }))];
}

/** Logits whose softmax is `probs` (0 becomes -Infinity). */
const logitsFor = (probs: readonly number[]): Float32Array => Float32Array.from(probs, Math.log);

/**
 * A Markov-chain "model": the logits at a node depend only on the node's own token, row
 * table[token]. This is exactly what a real model gives when the next-token distribution depends
 * only on the previous token.
 */
function markov(table: readonly (readonly number[])[], nodes: readonly CandidateNode[]): LogitsOf {
  const rows = table.map(logitsFor);
  return (node) => rows[nodes[node].token];
}

/** The tokens a verdict emits: accepted guesses (the root excluded), then the bonus. */
const emitted = (nodes: readonly CandidateNode[], v: Verdict): number[] => [
  ...v.acceptedNodes.slice(1).map((i) => nodes[i].token),
  v.bonusToken,
];

/** Replays a fixed list of uniforms; throws if the verifier draws more than were given. */
class ScriptedRng extends Rng {
  private used = 0;
  constructor(private readonly uniforms: readonly number[]) {
    super(0);
  }
  next(): number {
    if (this.used >= this.uniforms.length) throw new Error('scripted rng ran out of draws');
    return this.uniforms[this.used++];
  }
}

/**
 * Exact expectation over D independent uniform draws, by the midpoint rule on a G^D grid.
 * Exact (not approximate) when every acceptance/inverse-CDF breakpoint of the verifier is a
 * multiple of 1/G: the outcome is then constant on every grid cell. `f` gets a ScriptedRng.
 */
function gridExpectation(G: number, D: number, f: (rng: Rng, weight: number) => void): void {
  const weight = 1 / G ** D;
  const index = new Array<number>(D).fill(0);
  for (let cell = 0; cell < G ** D; cell++) {
    let c = cell;
    for (let d = 0; d < D; d++) {
      index[d] = c % G;
      c = Math.floor(c / G);
    }
    f(new ScriptedRng(index.map((i) => (i + 0.5) / G)), weight);
  }
}

function assertClose(actual: readonly number[], expected: readonly number[], tol: number, what: string): void {
  assert.equal(actual.length, expected.length, what);
  for (let i = 0; i < actual.length; i++) {
    assert.ok(Math.abs(actual[i] - expected[i]) <= tol, `${what}[${i}]: ${actual[i]} vs ${expected[i]}`);
  }
}

/**
 * Random trees over V tokens for property tests: each node picks an earlier parent, and half the
 * time guesses `likely(parentToken)`, so that long accepted chains actually occur.
 */
function randomTree(rng: Rng, rootToken: number, V: number, likely: (t: number) => number): CandidateNode[] {
  const n = 1 + Math.floor(rng.next() * 12);
  const nodes: CandidateNode[] = [{ parent: -1, token: rootToken }];
  for (let i = 1; i < n; i++) {
    const parent = Math.floor(rng.next() * i);
    const token = rng.next() < 0.5 ? likely(nodes[parent].token) : Math.floor(rng.next() * V);
    nodes.push({ parent, token });
  }
  return nodes;
}

// A 5-token chain whose argmax successor is t -> t+1 (mod 5); row t gives p(next | t).
const CHAIN = [
  [0.1, 0.5, 0.2, 0.1, 0.1],
  [0.05, 0.05, 0.6, 0.2, 0.1],
  [0.3, 0.0, 0.1, 0.4, 0.2],
  [0.1, 0.2, 0.1, 0.15, 0.45],
  [0.35, 0.25, 0.2, 0.2, 0.0],
];
const next = (t: number): number => (t + 1) % 5;

// ---- greedy -------------------------------------------------------------------------------------

test('greedy: full acceptance follows the argmax chain; the bonus is the argmax after it', () => {
  // root 0 -> 1 -> 2 -> 3 -> 4 with distractor siblings at every level.
  const nodes = tree(0, [[0, 3], [0, 1], [2, 0], [2, 2], [4, 1], [4, 3], [6, 4]]);
  const v = verifyGreedy(nodes, markov(CHAIN, nodes));
  assert.deepEqual(v, { acceptedNodes: [0, 2, 4, 6, 7], bonusToken: 0 });
  assert.deepEqual(emitted(nodes, v), [1, 2, 3, 4, 0]);
});

test('greedy: partial acceptance, no acceptance, root-only tree', () => {
  const partial = tree(0, [[0, 1], [1, 4], [1, 0]]);
  assert.deepEqual(verifyGreedy(partial, markov(CHAIN, partial)), { acceptedNodes: [0, 1], bonusToken: 2 });
  const none = tree(0, [[0, 2], [0, 3], [1, 3]]);
  assert.deepEqual(verifyGreedy(none, markov(CHAIN, none)), { acceptedNodes: [0], bonusToken: 1 });
  const root = tree(3, []);
  assert.deepEqual(verifyGreedy(root, markov(CHAIN, root)), { acceptedNodes: [0], bonusToken: 4 });
});

test('greedy: of siblings repeating the matching token, the one with the longest accepted path is taken', () => {
  // Nodes 1 and 2 both guess 1; only node 2 has a matching child (a lookup chain beside a guess).
  const nodes = tree(0, [[0, 1], [0, 1], [2, 2]]);
  assert.deepEqual(verifyGreedy(nodes, markov(CHAIN, nodes)), { acceptedNodes: [0, 2, 3], bonusToken: 3 });
  // The same further down: node 3's match below wins over its duplicate, node 2.
  const deeper = tree(0, [[0, 1], [1, 2], [1, 2], [3, 3]]);
  assert.deepEqual(verifyGreedy(deeper, markov(CHAIN, deeper)), { acceptedNodes: [0, 1, 3, 4], bonusToken: 4 });
  // Equally long: the first in node order.
  const tie = tree(0, [[0, 1], [0, 1]]);
  assert.deepEqual(verifyGreedy(tie, markov(CHAIN, tie)), { acceptedNodes: [0, 1], bonusToken: 2 });
});

test('greedy: only the accepted path\'s logits are read', () => {
  const nodes = tree(0, [[0, 1], [0, 3], [2, 4], [1, 2]]);
  const read: number[] = [];
  const inner = markov(CHAIN, nodes);
  verifyGreedy(nodes, (i) => (read.push(i), inner(i)));
  assert.deepEqual(read, [0, 1, 4]);
});

test('greedy PPD equals greedy autoregressive decoding on random trees', () => {
  const rng = new Rng(7);
  const V = 7;
  // A random 7-token chain; its greedy successor is argmax of the row.
  const table = Array.from({ length: V }, () => Array.from({ length: V }, () => rng.next()));
  const successor = (t: number): number => argmax(Float32Array.from(table[t]));
  const ppd = [3];
  let steps = 0;
  while (ppd.length < 300) {
    const nodes = randomTree(rng, ppd[ppd.length - 1], V, successor);
    ppd.push(...emitted(nodes, verifyGreedy(nodes, markov(table, nodes))));
    steps++;
  }
  const ar = [3];
  while (ar.length < ppd.length) ar.push(successor(ar[ar.length - 1]));
  assert.deepEqual(ppd, ar);
  assert.ok(steps < 250, `trees should accept guesses sometimes (${steps} steps for 300 tokens)`);
});

test('verifiers reject malformed trees with a clear InputError', () => {
  const logits: LogitsOf = () => logitsFor(CHAIN[0]);
  assert.throws(() => verifyGreedy([], logits), InputError);
  assert.throws(() => verifyGreedy(tree(0, [[1, 1]]), logits), /node 1: parent must be an earlier node/);
  assert.throws(() => verifyGreedy(tree(0, [[0, 1.5]]), logits), /node 1: token must be an integer/);
  assert.throws(() => verifyGreedy(tree(0, [[0, 9]]), logits), /node 1: token 9 is outside the vocabulary \(size 5\)/);
  assert.throws(() => verifyRejection(tree(0, [[0, 9]]), logits, samplingOptions(), new Rng(0)), InputError);
  assert.throws(() => verifyTypical(tree(0, [[0, 9]]), logits, { temperature: 1 }, new Rng(0)), InputError);
  assert.throws(() => verifyTypical(tree(0, []), logits, { temperature: -1 }, new Rng(0)), /temperature/);
  assert.throws(() => verifyTypical(tree(0, []), logits, { temperature: 1, epsilon: 0 }, new Rng(0)), /epsilon/);
});

// ---- typical ------------------------------------------------------------------------------------

// Root distribution for the typical tests: H = 1.1643 nats, 0.3·exp(-H) = 0.0936, so the bar is
// ε = 0.09 and tokens 0, 1, 2 (p = .5, .3, .12) pass while token 3 (p = .08) does not.
const ROOT = [0.5, 0.3, 0.12, 0.08];
const CONFIDENT = [0.91, 0.03, 0.03, 0.03]; // bar ε = 0.09: only token 0 passes
const FLAT = [0.25, 0.25, 0.25, 0.25]; // bar 0.3 · 1/4 = 0.075: every token passes

/** Explicit per-node logits: rows[i] is node i's next-token distribution. */
const perNode = (rows: readonly (readonly number[])[]): LogitsOf => {
  const logits = rows.map(logitsFor);
  return (i) => logits[i];
};

test('typicalThreshold: ε for confident distributions, δ·exp(-H) for flat ones', () => {
  const H = -ROOT.reduce((s, p) => s + p * Math.log(p), 0);
  assert.ok(Math.abs(typicalThreshold(Float32Array.from(ROOT), 0.09, 0.3) - 0.09) < 1e-12);
  assert.ok(Math.abs(typicalThreshold(Float32Array.from(ROOT), 0.2, 0.3) - 0.3 * Math.exp(-H)) < 1e-7);
  assert.ok(Math.abs(typicalThreshold(Float32Array.from(FLAT), 0.09, 0.3) - 0.075) < 1e-7);
  assert.ok(Math.abs(typicalThreshold(Float32Array.from([1, 0, 0, 0]), 0.09, 0.3) - 0.09) < 1e-12);
});

test('typical: accepts a guess iff p > min(ε, δ·exp(-H)) at its parent', () => {
  const t = { temperature: 1 };
  const rows = [ROOT, CONFIDENT];
  for (const [token, accepted] of [[0, true], [1, true], [2, true], [3, false]] as const) {
    const nodes = tree(9, [[0, token]]);
    const v = verifyTypical(nodes, perNode(rows), t, new Rng(1));
    assert.deepEqual(v.acceptedNodes, accepted ? [0, 1] : [0], `token ${token}`);
  }
  // Raising ε past 0.12 (bar becomes δ·exp(-H) = 0.0936) keeps token 2; δ = 1 (bar 0.12 > ...)
  // is the strict comparison at the boundary: p = 0.12 is not > 0.12.
  const nodes = tree(9, [[0, 2]]);
  assert.deepEqual(verifyTypical(nodes, perNode(rows), { temperature: 1, epsilon: 0.5 }, new Rng(1)).acceptedNodes, [0, 1]);
  assert.deepEqual(verifyTypical(nodes, perNode(rows), { temperature: 1, epsilon: 0.12, delta: 1 }, new Rng(1)).acceptedNodes, [0]);
  // Temperature flattens the distribution: at T = 2 token 3 has p = 0.150 > bar 0.09.
  const low = tree(9, [[0, 3]]);
  assert.deepEqual(verifyTypical(low, perNode(rows), { temperature: 2 }, new Rng(1)).acceptedNodes, [0, 1]);
});

test('typical: the longest acceptable chain wins; ties go to the likelier chain, then the first', () => {
  // Node 1 (token 0, p .5) is a leaf; node 2 (token 2, p .12) has an acceptable child (node 3).
  const longer = tree(9, [[0, 0], [0, 2], [2, 0]]);
  const rows = [ROOT, FLAT, CONFIDENT, FLAT];
  assert.deepEqual(verifyTypical(longer, perNode(rows), { temperature: 1 }, new Rng(1)).acceptedNodes, [0, 2, 3]);
  // Two acceptable leaves: token 1 (p .3) listed first, token 0 (p .5) second -> the likelier.
  const tie = tree(9, [[0, 1], [0, 0]]);
  assert.deepEqual(verifyTypical(tie, perNode([ROOT, FLAT, FLAT]), { temperature: 1 }, new Rng(1)).acceptedNodes, [0, 2]);
  // Duplicate siblings: equal likelihood, so the first.
  const dup = tree(9, [[0, 1], [0, 1]]);
  assert.deepEqual(verifyTypical(dup, perNode([ROOT, FLAT, FLAT]), { temperature: 1 }, new Rng(1)).acceptedNodes, [0, 1]);
  // A chain stops at the first unacceptable guess (node 2: token 3 under CONFIDENT).
  const stop = tree(9, [[0, 0], [1, 3], [2, 0]]);
  assert.deepEqual(verifyTypical(stop, perNode([ROOT, CONFIDENT, FLAT, FLAT]), { temperature: 1 }, new Rng(1)).acceptedNodes, [0, 1]);
});

test('typical: the bonus is drawn from the tokens at or above the bar, and all of them occur', () => {
  const nodes = tree(9, [[0, 3]]); // rejected, so the bonus comes from ROOT
  const counts = [0, 0, 0, 0];
  const rng = new Rng(5);
  for (let i = 0; i < 2000; i++) counts[verifyTypical(nodes, perNode([ROOT]), { temperature: 1 }, rng).bonusToken]++;
  assert.equal(counts[3], 0, 'token 3 (p .08) is below the bar and never drawn');
  // Renormalised over {0, 1, 2}: .5/.92, .3/.92, .12/.92; loose bounds, fixed seed.
  assert.ok(counts[0] > 900 && counts[1] > 500 && counts[2] > 150, JSON.stringify(counts));
});

test('typical: temperature 0 is greedy verification', () => {
  const rng = new Rng(11);
  for (let i = 0; i < 50; i++) {
    const nodes = randomTree(rng, i % 5, 5, next);
    const logits = markov(CHAIN, nodes);
    assert.deepEqual(verifyTypical(nodes, logits, { temperature: 0 }, rng), verifyGreedy(nodes, logits));
  }
});

test('typical does not preserve the model distribution (documented): a plausible guess always wins', () => {
  // The model emits token 2 first with p = 0.12, but typical acceptance accepts the guess "2"
  // every time.
  const nodes = tree(9, [[0, 2]]);
  const rng = new Rng(3);
  for (let i = 0; i < 100; i++) {
    assert.equal(emitted(nodes, verifyTypical(nodes, perNode([ROOT, FLAT]), { temperature: 1 }, rng))[0], 2);
  }
});

// ---- rejection sampling: exact checks ----------------------------------------------------------

test('rejection, exact: root with 2 children over 3 tokens; each branch has its analytic probability', () => {
  // p = (.6, .3, .1); children guess a = 0 then b = 1. Branches:
  //   accept a                      p_a                          = .6
  //   reject a, accept b            (1 - p_a) · p_b / (1 - p_a)  = .3
  //   reject both, bonus from {c}   (1 - p_a)(1 - p_b/(1 - p_a)) = .1
  // Breakpoints .6 and .75 are multiples of 1/20, so a 20-point grid per draw is exact.
  const p = [0.6, 0.3, 0.1];
  const nodes = tree(9, [[0, 0], [0, 1]]);
  const logits = perNode([p, p, p]);
  const branch = { a: 0, b: 0, bonus: [0, 0, 0] };
  const first = [0, 0, 0];
  gridExpectation(20, 3, (rng, w) => {
    const v = verifyRejection(nodes, logits, samplingOptions(), rng);
    if (v.acceptedNodes.length === 2) branch[v.acceptedNodes[1] === 1 ? 'a' : 'b'] += w;
    else branch.bonus[v.bonusToken] += w;
    first[emitted(nodes, v)[0]] += w;
  });
  const pa = p[0];
  const pb = p[1];
  assertClose([branch.a, branch.b], [pa, (1 - pa) * (pb / (1 - pa))], 1e-12, 'accept branches');
  assertClose(branch.bonus, [0, 0, (1 - pa) * (1 - pb / (1 - pa))], 1e-12, 'bonus branch');
  assertClose(first, p, 1e-12, 'first token');
});

test('rejection, exact: two-token output over a depth-2 tree with duplicates and zero-probability guesses', () => {
  // 3-token chain with probabilities in quarters; every residual ratio is then a multiple of
  // 1/12, so a 12-point grid per draw is exact. Row 2 gives token 2 probability 0.
  const table = [
    [0.5, 0.25, 0.25],
    [0.25, 0.5, 0.25],
    [0.5, 0.5, 0],
  ];
  const sampling = samplingOptions();
  for (const [label, rootToken, edges] of [
    ['duplicates and depth 2', 0, [[0, 1], [0, 1], [0, 0], [1, 2], [1, 0], [2, 2], [4, 2], [4, 2]]],
    ['zero-probability guess first', 2, [[0, 2], [0, 0], [2, 1], [3, 2]]],
    ['every token guessed', 1, [[0, 1], [0, 0], [0, 2], [1, 1]]],
  ] as [string, number, [number, number][]][]) {
    const nodes = tree(rootToken, edges);
    const logits = markov(table, nodes);
    // joint[a][b] = P(first two tokens = a, b); if the step emits one token, the second comes
    // from the model itself (exactly, by weight) since that is what the next step must match.
    const joint = table.map(() => [0, 0, 0]);
    gridExpectation(12, 4, (rng, w) => {
      const out = emitted(nodes, verifyRejection(nodes, logits, sampling, rng));
      if (out.length >= 2) joint[out[0]][out[1]] += w;
      else for (let b = 0; b < 3; b++) joint[out[0]][b] += w * table[out[0]][b];
    });
    const exact = table.map((_, a) => table[a].map((pab) => table[rootToken][a] * pab));
    assertClose(joint.flat(), exact.flat(), 1e-9, label);
  }
});

test('rejection: scripted draws accept iff u < residual(x) / residual mass', () => {
  const p = [0.6, 0.3, 0.1];
  const nodes = tree(9, [[0, 0], [0, 0], [0, 1]]);
  const logits = perNode([p, p, p, p]);
  const run = (us: number[]): Verdict => verifyRejection(nodes, logits, samplingOptions(), new ScriptedRng(us));
  assert.deepEqual(run([0.59, 0.99]), { acceptedNodes: [0, 1], bonusToken: 2 }); // bonus: u = .99 of node 1's p
  // Rejected 0; its duplicate (node 2) is skipped without a draw; token 1 needs u < .3/.4 = .75.
  assert.deepEqual(run([0.61, 0.74, 0.5]).acceptedNodes, [0, 3]);
  assert.deepEqual(run([0.61, 0.76, 0.5]), { acceptedNodes: [0], bonusToken: 2 });
});

test('rejection at temperature 0 is greedy verification (where no siblings repeat a token)', () => {
  // With repeated siblings, greedy follows the one with the longest accepted path and rejection
  // sampling the first one it meets (it cannot look ahead without biasing the draw).
  const repeatsSibling = (nodes: readonly CandidateNode[]) =>
    new Set(nodes.slice(1).map((n) => `${n.parent}:${n.token}`)).size < nodes.length - 1;
  const rng = new Rng(21);
  const greedy = samplingOptions({ temperature: 0 });
  let compared = 0;
  for (let i = 0; compared < 100; i++) {
    const nodes = randomTree(rng, i % 5, 5, next);
    if (repeatsSibling(nodes)) continue;
    compared++;
    const logits = markov(CHAIN, nodes);
    assert.deepEqual(verifyRejection(nodes, logits, greedy, rng), verifyGreedy(nodes, logits));
  }
});

// ---- rejection sampling: statistical check against the chain -----------------------------------

type Verify = (nodes: readonly CandidateNode[], logitsOf: LogitsOf, sampling: SamplingOptions, rng: Rng) => Verdict;

/**
 * The tree a step verifies after `t`: guesses from a fixed "draft" that is often wrong, with a
 * duplicate sibling (and its never-reachable subtree), a guess the chain gives probability 0 at
 * depth 1 and 2 (`zero(s)`: token 1 after 2, token 4 after 4; an ordinary guess after other
 * tokens), and a depth-2 duplicate.
 */
function draftTree(t: number): CandidateNode[] {
  const guess = (s: number): number => (s * 3 + 1) % 5; // t=0 -> 1, 1 -> 4, 2 -> 2, 3 -> 0, 4 -> 3
  const zero = (s: number): number => (s === 2 ? 1 : s === 4 ? 4 : (s + 2) % 5);
  const a = guess(t);
  const b = next(t);
  return tree(t, [
    [0, a], // 1
    [0, a], // 2: duplicate of 1
    [0, zero(t)], // 3
    [0, b], // 4
    [1, guess(a)], // 5
    [1, zero(a)], // 6
    [1, guess(a)], // 7: duplicate of 5
    [4, next(b)], // 8
    [2, next(a)], // 9: under the duplicate, never reached
    [5, guess(guess(a))], // 10
  ]);
}

/**
 * Samples `samples` continuations of `length` tokens after `start` by repeated verification steps
 * with one seeded Rng, and returns Pearson's chi-square of their joint counts against the chain's
 * exact probabilities (cells with expected count < 5 pooled into one), with its degrees of freedom.
 * Also asserts that no zero-probability sequence ever occurs.
 */
function chiSquare(verify: Verify, sampling: SamplingOptions, start: number, length: number, samples: number, seed: number) {
  const V = CHAIN.length;
  const probs = CHAIN.map((row) => toProbabilities(logitsFor(row), sampling));
  const trees = CHAIN.map((_, t) => draftTree(t));
  const logits = trees.map((nodes) => markov(CHAIN, nodes));
  const counts = new Float64Array(V ** length);
  const rng = new Rng(seed);
  for (let s = 0; s < samples; s++) {
    const out: number[] = [];
    let t = start;
    while (out.length < length) {
      out.push(...emitted(trees[t], verify(trees[t], logits[t], sampling, rng)));
      t = out[out.length - 1];
    }
    let cell = 0;
    for (let i = 0; i < length; i++) cell = cell * V + out[i];
    counts[cell]++;
  }
  let statistic = 0;
  let cells = 0;
  let pooledObserved = 0;
  let pooledExpected = 0;
  for (let cell = 0; cell < counts.length; cell++) {
    let p = 1;
    let prev = start;
    const tokens: number[] = [];
    for (let i = 0, c = cell; i < length; i++, c = Math.floor(c / V)) tokens.unshift(c % V);
    for (const tok of tokens) {
      p *= probs[prev][tok];
      prev = tok;
    }
    const expected = p * samples;
    if (expected === 0) {
      assert.equal(counts[cell], 0, `impossible sequence ${tokens} was emitted`);
    } else if (expected < 5) {
      pooledObserved += counts[cell];
      pooledExpected += expected;
    } else {
      statistic += (counts[cell] - expected) ** 2 / expected;
      cells++;
    }
  }
  if (pooledExpected > 0) {
    statistic += (pooledObserved - pooledExpected) ** 2 / pooledExpected;
    cells++;
  }
  return { statistic, df: cells - 1 };
}

/** Upper 1e-6 quantile of chi-square with df degrees of freedom (Wilson-Hilferty). */
function critical(df: number): number {
  const z = 4.753; // standard normal, one-sided 1e-6
  const a = 2 / (9 * df);
  return df * (1 - a + z * Math.sqrt(a)) ** 3;
}

/**
 * Deliberately wrong verifiers, to show the chi-square test has teeth. Same walk as
 * verifyRejection, with one mistake each:
 * - 'uniform-draft': accepts x with min(1, p(x)/q), q = 1/k (as if the k guesses were sampled
 *   uniformly), instead of p(x) for a deterministic guess;
 * - 'no-residual': accepts with p(x) but never removes rejected tokens, and draws the bonus from
 *   p instead of the residual;
 * - 'unnormalised': removes rejected tokens, but accepts later guesses with their unnormalised
 *   residual r(x) = p(x) instead of r(x) / Σr (the subtle one: only second and later guesses
 *   are affected).
 */
type Mistake = 'uniform-draft' | 'no-residual' | 'unnormalised';
function wrongRejection(mistake: Mistake): Verify {
  return (nodes, logitsOf, sampling, rng) => {
    const acceptedNodes = [0];
    let node = 0;
    for (;;) {
      const target = toProbabilities(logitsOf(node), sampling);
      const residual = target.slice();
      const kids = nodes.flatMap((n, i) => (i > 0 && n.parent === node ? [i] : []));
      let accepted: number | undefined;
      for (const child of kids) {
        const x = nodes[child].token;
        const mass = residual.reduce((s, r) => s + r, 0);
        const acceptance =
          mistake === 'uniform-draft' ? Math.min(1, (residual[x] / mass) * kids.length) : residual[x];
        if (rng.next() < acceptance) {
          accepted = child;
          break;
        }
        if (mistake !== 'no-residual') residual[x] = 0;
      }
      if (accepted === undefined) {
        // 'unnormalised' can reject every token with mass; it then falls back to the target.
        const bonusFrom = residual.some((r) => r > 0) ? residual : target;
        return { acceptedNodes, bonusToken: sampleFrom(bonusFrom, rng) };
      }
      acceptedNodes.push(accepted);
      node = accepted;
    }
  };
}

const CASES: [string, Partial<SamplingOptions>, number, number, number][] = [
  // label, sampling, start token, tokens per continuation, samples
  ['T=1, first 2 tokens', { temperature: 1 }, 0, 2, 20000],
  ['T=1, first 3 tokens', { temperature: 1 }, 3, 3, 20000],
  ['T=0.7 top-p 0.9, first 2 tokens', { temperature: 0.7, topP: 0.9 }, 1, 2, 20000],
];

test('rejection: emitted sequences follow the chain exactly (chi-square, fixed seeds)', () => {
  for (const [label, partial, start, length, samples] of CASES) {
    const { statistic, df } = chiSquare(verifyRejection, samplingOptions(partial), start, length, samples, 1234);
    assert.ok(df >= 8, `${label}: ${df} degrees of freedom`);
    assert.ok(statistic < critical(df), `${label}: chi-square ${statistic.toFixed(1)} >= ${critical(df).toFixed(1)} (df ${df})`);
  }
});

test('rejection: the same chi-square test fails deliberately wrong verifiers', () => {
  for (const mistake of ['uniform-draft', 'no-residual', 'unnormalised'] as const) {
    for (const [label, partial, start, length, samples] of CASES) {
      const { statistic, df } = chiSquare(wrongRejection(mistake), samplingOptions(partial), start, length, samples, 1234);
      assert.ok(statistic > critical(df), `${mistake}, ${label}: chi-square ${statistic.toFixed(1)} <= ${critical(df).toFixed(1)} (df ${df})`);
    }
  }
});
