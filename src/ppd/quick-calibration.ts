/**
 * The tree size for the engine where it runs, from a short measurement, for where no `ppd
 * calibrate` profile can exist: a browser page. L(n) over a few step sizes at one context, τ(n)
 * from the adapter's accuracy table, and the prediction alone (tree-size-choice.ts); unlike `ppd
 * calibrate`, nothing checks the prediction end to end, so a tree must be predicted to beat
 * plain decoding by a margin. Why the page needs it: WebAssembly prices wide forwards higher
 * than Node's ONNX Runtime (docs/bench/browser.md: 32 rows cost 8.9x one row in the page against
 * 2.7x in Node at 1 thread), so trees made for Node's curve are too wide there.
 *
 * Shape legend: n = input rows of one step, P = rows in the cache before it.
 */
import { latencyForwards, measureLatency, type LatencyPlan, type LatencyRow } from '../decode/latency.ts';
import type { LlamaModel } from '../model/llama-model.ts';
import type { AccuracyTable } from './accuracy.ts';
import type { PpdTreeSet } from './tree.ts';
import { rootOnlyTreeSet } from './tree-builder.ts';
import { chooseTreeSize, type Prediction } from './tree-size-choice.ts';
import { tauCurve, treeSetFor, type AdapterShape } from './tree-size-tau.ts';

/**
 * Step sizes measured: few, so that the measurement is 15 forwards, and none over 16 rows (wider
 * trees cost a page far more than they gain, docs/bench/browser.md).
 */
export const QUICK_GRID = [1, 2, 4, 8, 16] as const;

/** Rows in the cache before the measured step: a short context, cheap to prefill. */
const QUICK_CONTEXT = 32;

/** One warm-up round and two timed ones over QUICK_GRID, at one context (its length set per model). */
const quickPlan = (context: number): LatencyPlan => ({ grid: QUICK_GRID, contexts: [context], warmupRounds: 1, repeats: 2 });

/** Forwards quickTreeChoice runs (for a progress bar). */
export const QUICK_FORWARDS = latencyForwards(quickPlan(QUICK_CONTEXT));

/**
 * Predicted speedup a tree must reach to be chosen. The prediction prices the forward alone at
 * the accuracy table's τ, and both flatter: for the bundled model's trees `ppd calibrate` measured
 * 0.63-0.96 of the predicted speedup end to end (docs/CALIBRATION.md). So a tree is kept only where
 * 0.8 of its prediction still beats plain decoding; else the context lookup alone (root-only trees).
 */
export const QUICK_MARGIN = 1.25;

export interface QuickChoice {
  /** Input rows per step of the chosen trees; 1: no prompt-token rows pay here (root-only trees). */
  n: number;
  trees: PpdTreeSet;
  /** The fastest predicted size (before the margin). */
  fastest: Prediction;
  /** One per measured size, increasing n. */
  predictions: Prediction[];
  latency: LatencyRow[];
}

/** The choice from measured L(n) rows (QUICK_GRID or any grid starting at 1) and the accuracy table. Pure. */
export function quickDecision(latency: readonly LatencyRow[], acc: AccuracyTable, shape: AdapterShape, margin = QUICK_MARGIN): Omit<QuickChoice, 'latency'> {
  const grid = latency.map((row) => row.n);
  const tau = tauCurve(acc, grid, shape);
  const { fastest, predictions } = chooseTreeSize(grid.map((n, i) => ({ n, tau: tau[i]!.tau, latencyMs: latency[i]!.meanMs })));
  const n = fastest.speedup >= margin ? fastest.n : 1;
  const trees = n > 1 ? treeSetFor(acc, n, shape) : rootOnlyTreeSet({ promptTokens: shape.promptTokens, virtualTokens: shape.virtualTokens, config: { attention: shape.attention } });
  return { n, trees, fastest, predictions };
}

/** Measures L(n) over QUICK_GRID on `model` and decides (quickDecision). */
export async function quickTreeChoice(model: LlamaModel, acc: AccuracyTable, shape: AdapterShape, onForward?: () => void): Promise<QuickChoice> {
  const maxN = QUICK_GRID[QUICK_GRID.length - 1]!;
  const context = Math.max(0, Math.min(QUICK_CONTEXT, model.config.maxPositionEmbeddings - maxN));
  const latency = await measureLatency(model, quickPlan(context), onForward);
  return { ...quickDecision(latency, acc, shape), latency };
}
