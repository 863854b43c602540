/**
 * The step sizes n (input rows per PPD step) that calibration measures: every n up to a dense
 * limit, then a fixed number of evenly spaced sizes per octave, so that the grid is fine where
 * τ(n) and L(n) change fast (small trees) and sparse where both are smooth (large ones). Pure
 * arithmetic; no model, no I/O.
 *
 * With the defaults (dense 8, 4 per octave) and max 256:
 *   1 2 3 4 5 6 7 8 10 12 14 16 20 24 28 32 40 48 56 64 80 96 112 128 160 192 224 256
 */
import { InputError } from '../errors.ts';

export interface GridOptions {
  /** Every n in 1..dense is measured (default 8). */
  dense?: number;
  /** Sizes per octave above `dense`: in [2^k, 2^(k+1)) the step is 2^k / perOctave (default 4). */
  perOctave?: number;
}

/** The regular gap after n: 1 up to `dense`, then 2^floor(log2 n) / perOctave (at least 1). */
export function gridStep(n: number, dense: number, perOctave: number): number {
  if (n < dense) return 1;
  return Math.max(1, Math.floor(2 ** Math.floor(Math.log2(n)) / perOctave));
}

/**
 * Step sizes from 1 to `max`, increasing: 1..dense, then gridStep apart; `max` is always the
 * last (the gap before it may be shorter than the regular one).
 */
export function sizeGrid(max: number, options: GridOptions = {}): number[] {
  const dense = options.dense ?? 8;
  const perOctave = options.perOctave ?? 4;
  for (const [name, value] of [['max', max], ['dense', dense], ['perOctave', perOctave]] as const) {
    if (!Number.isInteger(value) || value < 1) throw new InputError(`size grid: ${name} must be an integer >= 1, got ${value}`);
  }
  const grid: number[] = [];
  for (let n = 1; n < max; n += gridStep(n, dense, perOctave)) grid.push(n);
  grid.push(max);
  return grid;
}

/** The grid value nearest to `n` (the smaller one on a tie); `grid` must be non-empty and sorted. */
export function nearestInGrid(grid: readonly number[], n: number): number {
  let best = grid[0]!;
  for (const g of grid) if (Math.abs(g - n) < Math.abs(best - n)) best = g;
  return best;
}
