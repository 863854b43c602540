/**
 * How much a generated text repeats itself: the share of its n-grams (of token ids) that are
 * distinct. A text that loops ("the LORD ofTo the LORD ofTo ...") scores low; varied text scores
 * near 1. Used as a quality figure of greedy continuations (bench:ppd, the corpus comparison and
 * a quality gate in the tests).
 */

/** Distinct n-grams / all n-grams of `ids` (1 for a sequence shorter than n: nothing repeats). */
export function distinctNgramShare(ids: readonly number[], n: number): number {
  const total = ids.length - n + 1;
  if (total <= 0) return 1;
  const seen = new Set<string>();
  for (let i = 0; i < total; i++) seen.add(ids.slice(i, i + n).join(','));
  return seen.size / total;
}
