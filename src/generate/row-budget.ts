/**
 * The row budget of a batched step: how many rows each PPD sequence's step may use when several
 * sequences share one forward. Every decoding sequence gets its one row (the token it has); the
 * rows beyond that (a tree, a lookup chain) are granted one increment at a time to whichever
 * sequence's next option raises the predicted throughput most,
 *
 *     predicted tokens per second = Σ expected tokens of the step / L(rows of the step),
 *
 * and no more once no increment raises it. L(n) is the forward's measured latency at n rows
 * (LatencyCurve, measured on this machine); a sequence's options are its decoder's own estimate
 * of the tokens a step yields at each row count (the tree set's expected accepted length, the
 * lookup chain's acceptance so far). While L(n) is flat, trees stay whole; as the batch grows,
 * the rows already in the step make L climb, an extra row buys relatively less, and the trees
 * shrink, down to plain decoding (one row each). docs/BATCHING.md states the rule with the
 * measurement behind it.
 *
 * Not here: which sequences take part in a step, or prefill chunks (the scheduler decides both
 * and passes the prefill rows as `fixedRows`).
 */
import { InputError } from '../errors.ts';
import type { LatencyCurve } from '../decode/latency.ts';

/** What a sequence's step yields with a given number of rows. */
export interface RowOption {
  rows: number;
  /** Expected tokens the step emits (accepted guesses + the model's own token): 1 for one row. */
  expectedTokens: number;
}

/**
 * Rows per sequence for one step: `options[s]` lists what sequence s's step yields at each row
 * count it can use (first option: 1 row); `fixedRows` rows of the step are spoken for (prefill
 * chunks), `maxRows` bounds the whole forward. Returns each sequence's row budget.
 */
export function allocateRows(options: readonly (readonly RowOption[])[], latency: LatencyCurve, fixedRows = 0, maxRows = Infinity): number[] {
  const hulls = options.map(upperHull);
  const at = hulls.map(() => 0); // index into each hull
  let rows = fixedRows + hulls.reduce((n, h) => n + h[0]!.rows, 0);
  let tokens = hulls.reduce((n, h) => n + h[0]!.expectedTokens, 0);
  for (;;) {
    let best = -1;
    let bestRate = tokens / latency.at(rows);
    for (let s = 0; s < hulls.length; s++) {
      const next = hulls[s]![at[s]! + 1];
      if (next === undefined) continue;
      const current = hulls[s]![at[s]!]!;
      const addRows = next.rows - current.rows;
      if (rows + addRows > maxRows) continue;
      const rate = (tokens + next.expectedTokens - current.expectedTokens) / latency.at(rows + addRows);
      if (rate > bestRate) {
        bestRate = rate;
        best = s;
      }
    }
    if (best < 0) return hulls.map((h, s) => h[at[s]!]!.rows);
    const current = hulls[best]![at[best]!]!;
    const next = hulls[best]![++at[best]!]!;
    rows += next.rows - current.rows;
    tokens += next.expectedTokens - current.expectedTokens;
  }
}

/**
 * The options worth taking, in increasing rows, each adding tokens at a lower rate per row than
 * the one before (the upper concave hull from the first option): an option below the hull is
 * never the best use of its rows.
 */
function upperHull(options: readonly RowOption[]): RowOption[] {
  if (options.length === 0) throw new InputError('a sequence needs at least one row option');
  const sorted = [...options].sort((a, b) => a.rows - b.rows || b.expectedTokens - a.expectedTokens);
  const hull: RowOption[] = [sorted[0]!];
  for (const o of sorted.slice(1)) {
    if (o.expectedTokens <= hull.at(-1)!.expectedTokens) continue;
    while (hull.length >= 2) {
      const [a, b] = [hull.at(-2)!, hull.at(-1)!];
      // b lies on or under the line from a to o: drop it.
      if ((b.expectedTokens - a.expectedTokens) * (o.rows - a.rows) <= (o.expectedTokens - a.expectedTokens) * (b.rows - a.rows)) hull.pop();
      else break;
    }
    hull.push(o);
  }
  return hull;
}
