/**
 * What the tests of decoders (PPD, speculative decoding) share: taking the first tokens of a
 * token stream, and Pearson's chi-square of sampled counts against exact enumeration.
 */
import type { TokenStream } from '../../src/decode/autoregressive.ts';

/** The first `count` tokens of `stream` (then stops pulling it). */
export async function take(stream: TokenStream, count: number): Promise<number[]> {
  const ids: number[] = [];
  for await (const chunk of stream) {
    ids.push(...chunk);
    if (ids.length >= count) break;
  }
  return ids.slice(0, count);
}

/**
 * chi-square of `counts` (over `runs` draws) against `probs`; cells expecting fewer than 5 draws
 * are pooled into one, as the approximation needs. `cells` counts the pooled cell once.
 */
export function chiSquare(counts: readonly number[], probs: readonly number[], runs: number): { chi: number; cells: number } {
  let chi = 0;
  let cells = 0;
  let pooledExpected = 0;
  let pooledCount = 0;
  probs.forEach((p, k) => {
    if (p * runs >= 5) {
      chi += (counts[k]! - p * runs) ** 2 / (p * runs);
      cells++;
    } else {
      pooledExpected += p * runs;
      pooledCount += counts[k]!;
    }
  });
  if (pooledExpected > 0) {
    chi += (pooledCount - pooledExpected) ** 2 / pooledExpected;
    cells++;
  }
  return { chi, cells };
}
