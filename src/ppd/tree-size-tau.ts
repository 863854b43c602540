/**
 * τ(n): how many tokens one PPD step yields on average with the best dynamic tree set of n input
 * rows, from the adapter's accuracy table through the tree builder (PPD.md §5, docs/TREES.md §3).
 * This half of the calibration is hardware independent; L(n) (measure.ts) is the other half.
 * No model, no timing.
 */
import type { AccuracyTable } from './accuracy.ts';
import type { AttentionVariant } from './prompt-mask.ts';
import type { PpdTreeSet } from './tree.ts';
import { treeRows } from './tree.ts';
import { buildTreeSet } from './tree-builder.ts';

export interface AdapterShape {
  promptTokens: number; // N
  virtualTokens: number; // Vt
  attention: AttentionVariant;
  accuracySource: string;
}

export interface TauPoint {
  n: number;
  /** The set's long-run mean tokens per step (expectedTokensPerStep). */
  tau: number;
  /** Input rows of trees[d], d = 0..N: a tree may use fewer rows than the budget. */
  rowsPerTree: number[];
}

/** The tree set the builder makes for budget n. */
export function treeSetFor(acc: AccuracyTable, n: number, shape: AdapterShape): PpdTreeSet {
  return buildTreeSet(acc, { budget: n, ...shape });
}

/** τ(n) for every n of `grid`; `onPoint` is called after each (the builder takes ~0.05 s at n = 285). */
export function tauCurve(acc: AccuracyTable, grid: readonly number[], shape: AdapterShape, onPoint?: (done: number) => void): TauPoint[] {
  return grid.map((n, i) => {
    const set = treeSetFor(acc, n, shape);
    onPoint?.(i + 1);
    return { n, tau: set.expectedTokensPerStep, rowsPerTree: set.trees.map((t) => treeRows(t, shape.virtualTokens)) };
  });
}
