/**
 * How many tokens the draft proposes next, adapted to the recent acceptance: a draft that the
 * target keeps agreeing with is asked for more, one it disagrees with early for fewer. A
 * rejected token costs a draft forward and a target row for nothing; a short chain that is
 * accepted whole leaves speed unused.
 *
 * Rule (bounded to 1..K): all k accepted → k + 1; rejected before the last drafted token
 * (fewer than k − 1 accepted) → k − 1; rejected at the last one → k stays. It starts at K: a
 * good draft is used fully from the first step, a poor one backs off within a few steps.
 */
import { InputError } from '../errors.ts';

export class DraftLength {
  private k: number;

  constructor(readonly max: number) {
    if (!(Number.isInteger(max) && max >= 1)) throw new InputError(`draft tokens must be an integer >= 1, got ${max}`);
    this.k = max;
  }

  /** Tokens to draft in the next step (1..max). */
  get current(): number {
    return this.k;
  }

  /** Records one step: `accepted` of `drafted` tokens were accepted. */
  update(accepted: number, drafted: number): void {
    if (accepted >= drafted) this.k = Math.min(this.max, this.k + 1);
    else if (accepted < drafted - 1) this.k = Math.max(1, this.k - 1);
  }
}
