/**
 * Speculative sampling: which tokens of a drafted chain the target accepts when sampling, so
 * that the output has exactly the target's sampling distribution (Leviathan et al. 2023, Chen
 * et al. 2023). Greedy decoding does not come here: a chain is a tree, and `verifyGreedy`
 * (ppd/verify.ts) already makes greedy speculative decoding equal plain greedy decoding.
 *
 * Why not `verifyRejection` (ppd/verify.ts)? It is exact too, but for deterministic proposals:
 * a guess x is accepted with probability p(x). A draft that samples x ~ q does better with this
 * rule, min(1, p(x)/q(x)): its expected acceptance is Σ min(p, q) ≥ Σ q·p, and a draft equal to
 * the target is always accepted. Deterministic proposals are the special case q = one-hot(x),
 * where the two rules coincide (accept with p(x); else sample from p with x removed).
 *
 * Not here: drafting (drafter.ts), the forward, the caches (speculative.ts).
 *
 * Shapes: k drafted tokens; chain node 0 is the root (the last emitted token), node i (1..k)
 * holds draft token i; probabilities are Float32Array[V], V = vocabulary size.
 */
import { InputError } from '../errors.ts';
import type { Rng } from '../sampling/rng.ts';
import { sampleFrom, samplingOptions, toProbabilities, type SamplingOptions } from '../sampling/sampler.ts';
import type { LogitsOf, Verdict } from '../ppd/verify.ts';

/**
 * Verifies a drafted chain. `tokens[i]` (i < k) was drawn from `draftProbs[i]` (the draft's
 * sampling distribution q_i given everything before it); `logitsOf(i)` is the target's output at
 * chain node i (0 = root), so p_i = toProbabilities(logitsOf(i), sampling) is the target's
 * distribution of token i + 1 of the chain, i.e. of `tokens[i]`'s position.
 *
 * For i = 0, 1, ...: accept tokens[i] = x if p_i(x) >= q_i(x), else with probability
 * p_i(x) / q_i(x) (one rng draw). On the first rejection, the bonus token is drawn from
 * norm(max(0, p_i − q_i)) and the chain ends there. If all k are accepted, the bonus is drawn
 * from p_k (the target's own next token after the whole chain).
 *
 * Proof that each emitted token has exactly the target's distribution p given what came before.
 * Fix one position, with p = p_i and q = q_i, and condition on everything emitted so far; the
 * draft token x is distributed as q (that is the drafter's contract: x ~ q given the prefix)
 * and the acceptance draw is fresh. Then for every token y:
 *   P(y accepted)            = q(y) · min(1, p(y)/q(y))                 = min(p(y), q(y)),
 *   P(some rejection)        = Σ_x q(x)·(1 − min(1, p(x)/q(x)))         = 1 − Σ min(p, q) = Σ max(0, p − q),
 *   P(y from the residual)   = Σ max(0, p − q) · max(0, p(y) − q(y)) / Σ max(0, p − q) = max(0, p(y) − q(y)),
 * and min(p, q) + max(0, p − q) = p. ∎ (The residual's mass Σ max(0, p − q) is > 0 whenever a
 * rejection is possible: a rejection needs some q(x) > p(x), and Σ p = Σ q = 1.)
 * After an acceptance the next position is conditioned on the longer prefix: the target's p_{i+1}
 * is its distribution given exactly that prefix (node i + 1's row of the same forward), and the
 * draft's token there was drawn from q_{i+1} given the same prefix. After a rejection or the
 * bonus, the next round starts from the emitted prefix afresh. By the chain rule, every emitted
 * sequence has the probability the target's own sampler would give it, however good the draft.
 */
export function verifySpeculative(
  tokens: readonly number[],
  draftProbs: readonly Float32Array[],
  logitsOf: LogitsOf,
  sampling: SamplingOptions,
  rng: Rng,
): Verdict {
  if (draftProbs.length !== tokens.length) {
    throw new InputError(`speculative sampling: ${tokens.length} draft tokens but ${draftProbs.length} draft distributions`);
  }
  const options = samplingOptions(sampling);
  const acceptedNodes = [0];
  for (let i = 0; i < tokens.length; i++) {
    const p = toProbabilities(logitsOf(i), options);
    const q = draftProbs[i]!;
    const x = tokens[i]!;
    if (q.length !== p.length) {
      throw new InputError(`speculative sampling: the draft's distribution has ${q.length} entries, the target's ${p.length}`);
    }
    if (!(Number.isInteger(x) && x >= 0 && x < p.length) || !(q[x]! > 0)) {
      throw new InputError(`speculative sampling: draft token ${x} (position ${i}) has no probability under its own draft distribution`);
    }
    if (p[x]! >= q[x]! || rng.next() * q[x]! < p[x]!) {
      acceptedNodes.push(i + 1);
      continue;
    }
    return { acceptedNodes, bonusToken: sampleResidual(p, q, rng) };
  }
  return { acceptedNodes, bonusToken: sampleFrom(toProbabilities(logitsOf(tokens.length), options), rng) };
}

/** One draw from norm(max(0, p − q)); from p itself should rounding leave no residual mass. */
function sampleResidual(p: Float32Array, q: Float32Array, rng: Rng): number {
  const residual = new Float32Array(p.length);
  let mass = 0;
  for (let t = 0; t < p.length; t++) {
    residual[t] = Math.max(0, p[t]! - q[t]!);
    mass += residual[t]!;
  }
  return sampleFrom(mass > 0 ? residual : p, rng);
}
