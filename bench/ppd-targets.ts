/**
 * Issue 18's targets for the bundled model and the names bench:ppd records them under in
 * docs/bench/ppd.json, for the reports that read that file (scripts/training-curve.ts,
 * bench/ppd-size.ts) as well as bench:ppd itself.
 */

/** PPD alone (no lookup) and the greedy text. */
export const MODEL_TARGETS = { tauAlone: 2.0, speedupAlone: 1.3, distinctFourGrams: 0.8 };

export const TARGET_NAMES = {
  tauAlone: 'τ, greedy PPD alone (issue 18)',
  speedupAlone: 'speedup, greedy PPD alone (issue 18)',
  speedupWithLookup: 'speedup, greedy PPD + context lookup (not PPD alone)',
  distinctFourGrams: 'greedy text: distinct 4-grams of the new tokens (median over prompts; issue 18)',
} as const;
