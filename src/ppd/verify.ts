/**
 * Verification: which guessed tokens of one PPD step the model accepts, and the token it adds.
 *
 * A step runs the model once over a tree of guessed continuations. Node 0 is the root (the last
 * token already accepted); every other node is a guessed token whose parent is an earlier node.
 * `logitsOf(node)` is the model's output at that node's row: the distribution of the token that
 * follows the path root..node. A verifier walks down from the root, accepting guesses, and ends
 * with a bonus token drawn from the model at the last accepted node, so a step always emits
 * (accepted guesses) + 1 tokens.
 *
 * Four policies, each a pure function of (tree, logits, random numbers):
 * - `verifyGreedy`: a guess is accepted iff it is the argmax. Output equals greedy decoding.
 * - `verifyCoupled`: a guess is accepted iff it is the token the sampler draws there with the
 *   number plain sampling would use for it. Output equals plain sampling with the same seed.
 * - `verifyTypical`: Medusa's typical acceptance, as the PPD reference samples. Fast and lenient;
 *   it does NOT preserve the model's sampling distribution.
 * - `verifyRejection`: recursive rejection sampling over the tree (SpecInfer / EAGLE style, for
 *   deterministic guesses); every emitted token has exactly the model's sampling distribution.
 *
 * Not here: how the tree is stored, built or masked (the tree compiler), running the forward, or
 * keeping the accepted rows in the KV cache (the decode loop does that with `acceptedNodes`).
 *
 * Shapes: nodes[n] with node 0 the root; logits Float32Array[V], V = vocabulary size.
 */
import { InputError } from '../errors.ts';
import type { Rng } from '../sampling/rng.ts';
import {
  argmax,
  sampleAt,
  sampleFrom,
  samplingOptions,
  toProbabilities,
  type SamplingOptions,
} from '../sampling/sampler.ts';

/** One node of a candidate tree. The root's fields are not read. */
export interface CandidateNode {
  /** Index of the parent node, < this node's own index. */
  readonly parent: number;
  /** The guessed token id at this node. */
  readonly token: number;
}

/** The model's logits (Float32Array[V]) at a node's row: the next-token distribution there. */
export type LogitsOf = (node: number) => Float32Array;

/** The outcome of verifying one tree. */
export interface Verdict {
  /** The accepted path as node indices, root first (always starts with 0). */
  acceptedNodes: number[];
  /** The model's own token after the last accepted node. */
  bonusToken: number;
}

/** Options of typical acceptance; names follow the PPD paper (ε, δ). */
export interface TypicalOptions {
  /** Divides logits before softmax; 0 means greedy verification. */
  temperature: number;
  /** Fixed probability bar ε (Medusa's posterior_threshold). Default 0.09. */
  epsilon?: number;
  /** Entropy-scaled bar factor δ (Medusa's posterior_alpha). Default 0.3. */
  delta?: number;
}

/**
 * Greedy verification. From the root, descend into a child whose token is the argmax of the
 * current node's logits until none matches; the bonus token is the argmax at the last accepted
 * node. Each emitted token is then exactly what greedy autoregressive decoding would emit at that
 * position, so greedy PPD equals greedy decoding token for token. Where siblings repeat a token
 * (a context-lookup chain beside the tree's guesses), every such child is followed and the
 * longest accepted path is kept (the first in child order among equally long ones): the tokens
 * are the same either way, only how many are accepted differs. Only logits on matching paths are
 * read.
 */
export function verifyGreedy(nodes: readonly CandidateNode[], logitsOf: LogitsOf): Verdict {
  return verifyChosen(nodes, logitsOf, (logits) => argmax(logits));
}

/**
 * Coupled verification: greedy verification's walk with the argmax replaced by the token the
 * model's sampler draws there. The token at depth d below the root (d = 0: the first new token)
 * is drawn from toProbabilities(logits, sampling) with the number `uniformAt(d)`, the one plain
 * sampling would use for that token (Sampler.uniform), and a guess is accepted iff it is that
 * draw. So a step emits exactly the tokens plain sampling with the same numbers emits, whatever
 * the tree or the lookup chain: every token has the model's sampling distribution, a seeded
 * request gives the same text with PPD or without, alone or in any batch, and a guess of
 * probability p is accepted with probability p, as recursive rejection accepts it. The caller
 * uses up acceptedNodes.length numbers afterwards (Sampler.advance).
 */
export function verifyCoupled(nodes: readonly CandidateNode[], logitsOf: LogitsOf, sampling: SamplingOptions, uniformAt: (depth: number) => number): Verdict {
  const options = samplingOptions(sampling);
  return verifyChosen(nodes, logitsOf, (logits, depth) => sampleAt(toProbabilities(logits, options), uniformAt(depth)));
}

/**
 * The walk greedy and coupled verification share: at each node the model's token is
 * `choose(logits, depth)` (depth 0 at the root); children holding it are accepted, the longest
 * accepted path is kept, and the token chosen at its last node is the bonus.
 */
function verifyChosen(nodes: readonly CandidateNode[], logitsOf: LogitsOf, choose: (logits: Float32Array, depth: number) => number): Verdict {
  const children = childrenOf(nodes);
  // The longest accepted chain below `node` (excluding it), and the token chosen at its end.
  const longestBelow = (node: number, depth: number): { chain: number[]; bonusToken: number } => {
    const logits = logitsOf(node);
    const chosen = choose(logits, depth);
    let result = { chain: [] as number[], bonusToken: chosen };
    for (const child of children[node]) {
      if (tokenIn(nodes, child, logits.length) !== chosen) continue;
      const below = longestBelow(child, depth + 1);
      if (below.chain.length + 1 > result.chain.length) result = { chain: [child, ...below.chain], bonusToken: below.bonusToken };
    }
    return result;
  };
  const { chain, bonusToken } = longestBelow(0, 0);
  return { acceptedNodes: [0, ...chain], bonusToken };
}

/**
 * Typical acceptance (Medusa, used by the PPD reference). At a node with distribution
 * p = softmax(logits / temperature) and entropy H, a child is acceptable iff
 * p(child token) > min(ε, δ·exp(−H)). Of all root-to-node chains of acceptable children, take the
 * longest; among equally long ones the one with the highest summed log p of its tokens; then the
 * first in child order (the reference picks the candidate path the same way). The bonus token is
 * sampled, as in the reference's `get_typical_one_token`, from p restricted to tokens with
 * p >= the same bar, renormalised.
 *
 * This trades fidelity for speed: a guess is accepted whenever it is plausible enough, not with
 * its model probability, so the output distribution is NOT the model's (it is sharper, and
 * biased towards whatever the guesses propose). Use `verifyRejection` when the distribution must
 * be preserved. Entropy here is the exact Shannon entropy; the reference adds 1e-5 inside the
 * log, which shifts the bar slightly. Temperature 0 is greedy verification.
 */
export function verifyTypical(
  nodes: readonly CandidateNode[],
  logitsOf: LogitsOf,
  options: TypicalOptions,
  rng: Rng,
): Verdict {
  const { temperature, epsilon = 0.09, delta = 0.3 } = options;
  if (!(Number.isFinite(temperature) && temperature >= 0)) {
    throw new InputError(`typical acceptance temperature must be a finite number >= 0, got ${temperature}`);
  }
  if (!(epsilon > 0 && epsilon <= 1)) {
    throw new InputError(`typical acceptance epsilon must be in (0, 1], got ${epsilon}`);
  }
  if (!(delta > 0 && Number.isFinite(delta))) {
    throw new InputError(`typical acceptance delta must be a finite number > 0, got ${delta}`);
  }
  if (temperature === 0) return verifyGreedy(nodes, logitsOf);

  const children = childrenOf(nodes);
  const scaled: SamplingOptions = { temperature, topK: 0, topP: 1, seed: 0 };
  const cache = new Map<number, { probs: Float32Array; bar: number }>();
  const at = (node: number): { probs: Float32Array; bar: number } => {
    let entry = cache.get(node);
    if (entry === undefined) {
      const probs = toProbabilities(logitsOf(node), scaled);
      entry = { probs, bar: typicalThreshold(probs, epsilon, delta) };
      cache.set(node, entry);
    }
    return entry;
  };

  // The best chain below `node` (excluding it) and its summed log-probability. Each node is
  // visited at most once, and only through acceptable edges.
  const bestBelow = (node: number): { chain: number[]; logLikelihood: number } => {
    const { probs, bar } = at(node);
    let best = { chain: [] as number[], logLikelihood: 0 };
    for (const child of children[node]) {
      const p = probs[tokenIn(nodes, child, probs.length)];
      if (!(p > bar)) continue;
      const below = bestBelow(child);
      const candidate = { chain: [child, ...below.chain], logLikelihood: Math.log(p) + below.logLikelihood };
      const longer = candidate.chain.length > best.chain.length;
      const likelier = candidate.chain.length === best.chain.length && candidate.logLikelihood > best.logLikelihood;
      if (longer || likelier) best = candidate;
    }
    return best;
  };

  const acceptedNodes = [0, ...bestBelow(0).chain];
  const { probs, bar } = at(acceptedNodes[acceptedNodes.length - 1]);
  const kept = probs.map((p) => (p >= bar ? p : 0));
  // With δ > 1 the bar can exceed every probability; fall back to the most likely token.
  const bonusToken = kept.some((p) => p > 0) ? sampleFrom(kept, rng) : argmax(probs);
  return { acceptedNodes, bonusToken };
}

/**
 * Typical acceptance's bar for one distribution: min(ε, δ·exp(−H)), H = −Σ p ln p (nats).
 * A confident (low-entropy) distribution gets the fixed bar ε; a flat one a lower bar.
 */
export function typicalThreshold(probs: Float32Array, epsilon: number, delta: number): number {
  let entropy = 0;
  for (const p of probs) if (p > 0) entropy -= p * Math.log(p);
  return Math.min(epsilon, delta * Math.exp(-entropy));
}

/**
 * Distribution-preserving verification: recursive rejection sampling over the tree, for
 * deterministic guesses (each child proposes its token with draft probability 1, as PPD's top-k
 * guesses do). At the current node, p = toProbabilities(logits, sampling) is the target. Its
 * children are tried in order: child token x is accepted with probability r(x) / Σr, where r is
 * the residual (p with every already rejected token zeroed); on rejection r(x) := 0. A child
 * whose token has r(x) = 0 (a zero-probability guess, or a sibling repeating a rejected token)
 * is skipped without a draw. If a child is accepted, descend into it with a fresh p from its own
 * logits; if all are rejected, the bonus token is drawn from r / Σr. The rng is consumed: one
 * draw per tried child, plus one for the bonus.
 *
 * Every emitted token has exactly the distribution p, and so, by the chain rule, every emitted
 * sequence the probability the model's sampler gives it (the proof: docs/ARCHITECTURE.md,
 * "Verification"). Where siblings repeat a token, the first one tried is the one descended into
 * (the decoder lists a context-lookup chain first for that reason); temperature 0 then reduces
 * to `verifyGreedy` except that greedy verification follows the repeat with the longest
 * accepted path.
 */
export function verifyRejection(
  nodes: readonly CandidateNode[],
  logitsOf: LogitsOf,
  sampling: SamplingOptions,
  rng: Rng,
): Verdict {
  const options = samplingOptions(sampling);
  const children = childrenOf(nodes);
  const acceptedNodes = [0];
  let node = 0;
  for (;;) {
    // residual: Float64Array[V], unnormalised; `mass` is its sum.
    const residual = Float64Array.from(toProbabilities(logitsOf(node), options));
    let mass = sum(residual);
    let accepted: number | undefined;
    for (const child of children[node]) {
      const x = tokenIn(nodes, child, residual.length);
      if (residual[x] === 0) continue;
      if (rng.next() * mass < residual[x]) {
        accepted = child;
        break;
      }
      residual[x] = 0;
      // Recomputed, not decremented, so the mass cannot drift below the remaining residual.
      mass = sum(residual);
    }
    if (accepted === undefined) {
      const normalised = Float32Array.from(residual, (r) => r / mass);
      return { acceptedNodes, bonusToken: sampleFrom(normalised, rng) };
    }
    acceptedNodes.push(accepted);
    node = accepted;
  }
}

/** children[i] = indices of node i's children, in node order (Array[n] of lists). */
function childrenOf(nodes: readonly CandidateNode[]): number[][] {
  if (nodes.length === 0) throw new InputError('candidate tree is empty; node 0 must be the root');
  const children: number[][] = nodes.map(() => []);
  for (let i = 1; i < nodes.length; i++) {
    const { parent, token } = nodes[i];
    if (!(Number.isInteger(parent) && parent >= 0 && parent < i)) {
      throw new InputError(`candidate tree node ${i}: parent must be an earlier node in [0, ${i}), got ${parent}`);
    }
    if (!(Number.isInteger(token) && token >= 0)) {
      throw new InputError(`candidate tree node ${i}: token must be an integer >= 0, got ${token}`);
    }
    children[parent].push(i);
  }
  return children;
}

/** The node's token, checked against the vocabulary size V of the logits it is compared with. */
function tokenIn(nodes: readonly CandidateNode[], node: number, V: number): number {
  const token = nodes[node].token;
  if (token >= V) {
    throw new InputError(`candidate tree node ${node}: token ${token} is outside the vocabulary (size ${V})`);
  }
  return token;
}

function sum(values: Float64Array): number {
  let total = 0;
  for (const v of values) total += v;
  return total;
}
