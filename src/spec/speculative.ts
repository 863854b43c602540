/**
 * Speculative decoding as a token stream (PPD.md section 9), interchangeable with plain and PPD
 * decoding: a small draft model proposes a chain of k tokens, the target runs the root (its own
 * latest token) and the chain in one forward and verifies them, and the accepted tokens plus
 * the target's own next token are emitted. With `draft.ppd` the draft proposes through its own
 * PPD adapter (drafter.ts), which needs fewer draft forwards per chain.
 *
 * One step reads as four calls: propose (drafter), one target forward over [root, x_1..x_k] at
 * positions P..P+k with a causal mask (a chain is the simplest tree), verify (greedy: the argmax
 * chain, `verifyGreedy`, so the output is plain greedy decoding of the target token for token;
 * sampling: speculative sampling, `verifySpeculative`, so the output has exactly the target's
 * distribution), and keep: the target appends the keys/values of the root and the accepted
 * tokens only; the draft rolls back to the accepted prefix and catches up on the bonus token at
 * its next proposal. The draft length k adapts to the acceptance (decode/draft-length.ts).
 *
 * Stream shape: the prompt's forward yields the first token (the target's own); every step
 * yields the accepted draft tokens followed by the target's bonus token, the next step's root.
 */
import { InputError } from '../errors.ts';
import { newCache, prefill, type TokenStream } from '../decode/autoregressive.ts';
import { causalMask, type LlamaModel } from '../model/llama-model.ts';
import { verifyGreedy, type CandidateNode, type Verdict } from '../ppd/verify.ts';
import type { Sampler } from '../sampling/sampler.ts';
import { DraftLength } from '../decode/draft-length.ts';
import { AutoregressiveDrafter, PpdDrafter, type Draft, type Drafter } from './drafter.ts';
import type { DraftSetup } from './setup.ts';
import { verifySpeculative } from './speculative-sampling.ts';

/** What one step did: for stats, the UI and the benchmark. */
export interface SpeculativeStep {
  /** Tokens emitted: accepted + 1 (the prompt's forward: 1). */
  tokens: number;
  /** Draft tokens proposed (k) and accepted by the target (0 for the prompt's forward). */
  drafted: number;
  accepted: number;
  /** Draft forwards the proposal took. */
  draftForwards: number;
}

export interface SpeculativeOptions {
  draft: DraftSetup;
  /** Sampling options (temperature 0 = greedy) and the seeded Rng that drafting and verification share. */
  sampler: Sampler;
  onStep?: (step: SpeculativeStep) => void;
}

/** Speculative decoding as a token stream: prefill yields [first token], each step its emitted tokens. */
export async function* speculativeDecode(target: LlamaModel, promptIds: number[], o: SpeculativeOptions): TokenStream {
  const { draft, sampler } = o;
  const V = target.config.vocabSize;
  if (draft.model.config.vocabSize !== V) {
    throw new InputError(`the draft model's vocabulary (${draft.model.config.vocabSize}) differs from the target's (${V})`);
  }
  const drafter: Drafter = draft.ppd ? new PpdDrafter(draft.model, draft.ppd, sampler) : new AutoregressiveDrafter(draft.model, sampler);
  const length = new DraftLength(draft.draftTokens);
  const cache = newCache(target);

  let root = sampler.sample(await prefill(target, promptIds, cache));
  /** Prompt + every emitted token: what the draft continues. */
  const sequence = [...promptIds, root];
  o.onStep?.({ tokens: 1, drafted: 0, accepted: 0, draftForwards: 0 });
  yield [root];
  for (;;) {
    const k = length.current;
    const proposal = await drafter.propose(sequence, k);

    // Chain node 0 is the root, node i (1..k) draft token i; row i of the forward is node i.
    const chain = [root, ...proposal.tokens];
    const P = cache.length;
    const out = await target.forward({ embeds: target.embed(chain), positions: chain.map((_, i) => P + i), mask: causalMask(chain.length, P), cache });
    const logitsOf = (node: number) => out.logits.subarray(node * V, (node + 1) * V);
    const verdict = verify(root, proposal, logitsOf, sampler);
    cache.append(out.keys, out.values, verdict.acceptedNodes);

    const accepted = verdict.acceptedNodes.length - 1;
    const tokens = [...proposal.tokens.slice(0, accepted), verdict.bonusToken];
    length.update(accepted, k);
    sequence.push(...tokens);
    root = verdict.bonusToken;
    o.onStep?.({ tokens: tokens.length, drafted: k, accepted, draftForwards: proposal.forwards });
    yield tokens;
  }
}

function verify(root: number, proposal: Draft, logitsOf: (node: number) => Float32Array, sampler: Sampler): Verdict {
  if (sampler.greedy) {
    const nodes: CandidateNode[] = [{ parent: 0, token: root }, ...proposal.tokens.map((token, i) => ({ parent: i, token }))];
    return verifyGreedy(nodes, logitsOf);
  }
  return verifySpeculative(proposal.tokens, proposal.probs!, logitsOf, sampler.options, sampler.rng);
}
