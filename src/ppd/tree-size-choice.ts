/**
 * The hardware-aware choice of the tree size (PPD.md §8): with τ(n) the expected tokens per step
 * of the best tree set of n input rows and L(n) the latency of a forward over n rows on this
 * machine, the predicted decoding speed is τ(n) / L(n) and the predicted speedup over plain
 * decoding (one token per L(1)) is τ(n) · L(1) / L(n). The choice is the n with the highest
 * speed. Pure arithmetic on measured curves; measuring them is measure.ts's job.
 */
import { InputError } from '../errors.ts';
import { nearestInGrid } from './tree-size-grid.ts';

export interface CurvePoint {
  /** Input rows per step. */
  n: number;
  /** τ(n), tokens per step (>= 1). */
  tau: number;
  /** L(n), milliseconds per forward (> 0). */
  latencyMs: number;
}

export interface Prediction extends CurvePoint {
  /** τ(n) / L(n), in tokens per second. */
  tokensPerSecond: number;
  /** τ(n) · L(1) / L(n): predicted speed over plain decoding's 1 token per L(1). */
  speedup: number;
}

export interface ChoiceOptions {
  /**
   * Take the smallest n whose predicted speed is within this share of the best (default 0: the
   * best, exact ties going to the smaller n). A smaller tree costs less memory and is less
   * exposed to latency noise, so a little tolerance is a fair trade on noisy machines.
   */
  tolerance?: number;
}

export interface Choice {
  chosen: Prediction;
  /** The n with the highest predicted speed (equal to chosen when tolerance is 0). */
  fastest: Prediction;
  /** One per input point, in increasing n. */
  predictions: Prediction[];
}

/** Relative difference under which two speeds count as equal (rounding, not measurement). */
const TIE = 1e-9;

/** Checks the curve (integer n, unique, n = 1 present, τ >= 1, L > 0) and returns it sorted by n. */
function checkedCurve(points: readonly CurvePoint[]): CurvePoint[] {
  const sorted = [...points].sort((a, b) => a.n - b.n);
  sorted.forEach((p, i) => {
    if (!Number.isInteger(p.n) || p.n < 1) throw new InputError(`curve: n must be an integer >= 1, got ${p.n}`);
    if (i > 0 && sorted[i - 1]!.n === p.n) throw new InputError(`curve: n = ${p.n} appears twice`);
    if (!(p.tau >= 1) || !Number.isFinite(p.tau)) throw new InputError(`curve: τ(${p.n}) must be a number >= 1, got ${p.tau}`);
    if (!(p.latencyMs > 0) || !Number.isFinite(p.latencyMs)) throw new InputError(`curve: L(${p.n}) must be a positive number of ms, got ${p.latencyMs}`);
  });
  if (sorted[0]?.n !== 1) throw new InputError('curve: needs n = 1 (plain decoding\'s step), the reference of every speedup');
  return sorted;
}

/** Predicted speed and speedup at every point of the curve, in increasing n. */
export function predict(points: readonly CurvePoint[]): Prediction[] {
  const curve = checkedCurve(points);
  const l1 = curve[0]!.latencyMs;
  return curve.map((p) => ({ ...p, tokensPerSecond: (1000 * p.tau) / p.latencyMs, speedup: (p.tau * l1) / p.latencyMs }));
}

/** The n maximising τ(n) / L(n) (see ChoiceOptions for ties and tolerance). */
export function chooseTreeSize(points: readonly CurvePoint[], options: ChoiceOptions = {}): Choice {
  const tolerance = options.tolerance ?? 0;
  if (!(tolerance >= 0 && tolerance < 1)) throw new InputError(`tolerance must be in 0..1 (a share of the best speed), got ${tolerance}`);
  const predictions = predict(points);
  let fastest = predictions[0]!;
  for (const p of predictions) if (p.tokensPerSecond > fastest.tokensPerSecond * (1 + TIE)) fastest = p;
  const floor = fastest.tokensPerSecond * (1 - tolerance) * (1 - TIE);
  const chosen = predictions.find((p) => p.tokensPerSecond >= floor)!;
  return { chosen, fastest, predictions };
}

/**
 * Sizes whose end-to-end speed is worth measuring beside the chosen one: the grid sizes nearest
 * to chosen/4, chosen/2, 2·chosen and 4·chosen that lie in the grid's range, plus `extra` ones
 * (e.g. the budget of the adapter's default trees.json) that do. Sorted, without repeats.
 */
export function sizesToCheck(grid: readonly number[], chosen: number, extra: readonly number[] = []): number[] {
  const max = grid[grid.length - 1]!;
  const around = [chosen / 4, chosen / 2, chosen * 2, chosen * 4].filter((n) => n >= 2 && n <= max).map((n) => nearestInGrid(grid, n));
  const sizes = new Set([chosen, ...around, ...extra.filter((n) => Number.isInteger(n) && n >= 1 && n <= max)]);
  return [...sizes].sort((a, b) => a - b);
}

/** How the calibration settled on n: the prediction alone, or the end-to-end measurement. */
export interface Decision {
  /** Input rows per step to decode with; 1 means no prompt-token rows (plain decoding without lookup). */
  n: number;
  /**
   * Context-lookup tokens per step to verify beside the trees (0: none); null when not measured
   * (the decision rests on the prediction, which does not price the lookup).
   */
  lookup: number | null;
  /**
   * Whether the adapter folder's static n-gram table drafts beside the trees; null when not
   * measured (no check, or no table in the folder), and then decoding's default applies.
   */
  ngram: boolean | null;
  basis: 'prediction' | 'measurement';
  /** The speedup behind the decision: measured when basis is 'measurement', else predicted. */
  speedup: number;
}

/**
 * Whether a decision (or a measured candidate) guesses anything: prompt-token rows, the context
 * lookup or the n-gram table. One that does not is plain decoding.
 */
export function guessesAnything(d: { n: number; lookup: number | null; ngram?: boolean | null }): boolean {
  return d.n > 1 || (d.lookup ?? 0) > 0 || d.ngram === true;
}

/**
 * Default share by which a measured PPD speed must beat plain decoding to be chosen: below it,
 * the gain is inside the run-to-run noise of a short check on a shared machine.
 */
export const DEFAULT_MEASURED_MARGIN = 0.03;

/** One end-to-end measurement the decision weighs; the table counts as checked when any ran with `ngram` true. */
export interface MeasuredCandidate {
  n: number;
  lookup: number;
  ngram?: boolean;
  speedup: number;
}

/**
 * The final decision. The prediction τ(n)·L(1)/L(n) prices the forward only; a PPD step also
 * pays work outside it (building the step's rows, verifying, compacting the cache) which plain
 * decoding does not, so on a machine where the forward is cheap the prediction is optimistic
 * (docs/calibration/ measured 5–10 %), and it knows nothing of the context lookup or the n-gram
 * table. When the end-to-end check ran, its measured speedups decide: the checked (size, lookup,
 * table) with the best one, or plain decoding (n = 1, no lookup, no table) when none beats plain
 * by `margin`. Without a check the prediction's choice stands and the lookup and table are left
 * to decoding's defaults.
 */
export function decide(choice: Choice, measured: readonly MeasuredCandidate[] | null, margin = DEFAULT_MEASURED_MARGIN): Decision {
  if (!(margin >= 0 && margin < 1)) throw new InputError(`margin must be in 0..1 (a share of plain speed), got ${margin}`);
  if (measured === null || measured.length === 0) return { n: choice.chosen.n, lookup: null, ngram: null, basis: 'prediction', speedup: choice.chosen.speedup };
  const tableChecked = measured.some((m) => m.ngram === true);
  const best = measured.reduce((a, b) => (b.speedup > a.speedup ? b : a));
  if (guessesAnything(best) && best.speedup >= 1 + margin) return { n: best.n, lookup: best.lookup, ngram: tableChecked ? best.ngram === true : null, basis: 'measurement', speedup: best.speedup };
  return { n: 1, lookup: 0, ngram: tableChecked ? false : null, basis: 'measurement', speedup: 1 };
}

/** The prompt-token trees measured fastest alone (bestWithoutLookup). */
export interface WithoutLookup {
  /** Input rows per step (>= 2). */
  n: number;
  /** Measured speedup over plain decoding; below 1 where they lose to it. */
  speedup: number;
}

/**
 * The best the prompt tokens did alone (no context lookup, no n-gram table): the checked tree
 * size with the best measured speedup, whether or not it beats plain decoding. It is what `--lookup
 * 0` asks for where the decision verifies a lookup chain (an explicit request for the prompt
 * tokens, so no margin applies: the user is told where they lose to plain decoding), and what the
 * demo and the benchmarks show as PPD alone. Null when the check measured no prompt-token trees.
 */
export function bestWithoutLookup(measured: readonly MeasuredCandidate[] | null): WithoutLookup | null {
  const alone = (measured ?? []).filter((m) => m.n > 1 && m.lookup === 0 && m.ngram !== true);
  if (alone.length === 0) return null;
  const best = alone.reduce((a, b) => (b.speedup > a.speedup ? b : a));
  return { n: best.n, speedup: best.speedup };
}
