/**
 * L(n): the latency of one forward over n input rows on this machine, measured (`measureLatency`,
 * which `ppd calibrate` and `ppd serve` use) and as a curve to read between the measured sizes
 * (`LatencyCurve`, which the batch scheduler's row budget uses). Timing is wall time of whole
 * forwards in milliseconds, in interleaved rounds (report/timing.ts).
 *
 * Shape legend: n = input rows of one step, P = rows in the KV cache (the context), V = vocabulary.
 */
import { InputError } from '../errors.ts';
import { causalMask, type ForwardInput, type LlamaModel } from '../model/llama-model.ts';
import { spread, timeInRounds, type Spread } from '../report/timing.ts';
import { newCache, prefill } from './autoregressive.ts';

export interface LatencyPlan {
  /** Step sizes n, increasing. */
  grid: readonly number[];
  /** Context lengths P: rows in the cache before the step (e.g. 64 and 256). */
  contexts: readonly number[];
  /** Rounds over every (P, n) whose times are dropped. */
  warmupRounds: number;
  /** Timed rounds; the median counts. */
  repeats: number;
}

export interface LatencyRow {
  n: number;
  /** One per plan.contexts, in that order. */
  perContext: Spread[];
  /** Mean over the contexts of the median: the L(n) the choice uses. */
  meanMs: number;
}

/** Spread-out token ids (the values do not change the cost of a forward). */
const spreadIds = (count: number, V: number, salt: number) => Array.from({ length: count }, (_, i) => (i * 7919 + salt * 104729) % V);

/** Forwards calibration runs: plan.contexts × plan.grid × (warmupRounds + repeats). */
export const latencyForwards = (plan: LatencyPlan) => plan.contexts.length * plan.grid.length * (plan.warmupRounds + plan.repeats);

/**
 * L(n) for every n of the grid at every context length: one forward of n causal rows after a
 * cache of P rows (a tree's mask costs the same as a causal one: the graph takes a dense mask).
 * The forward never changes the cache, so one prefilled cache per P serves every call.
 */
export async function measureLatency(model: LlamaModel, plan: LatencyPlan, onForward?: () => void): Promise<LatencyRow[]> {
  const V = model.config.vocabSize;
  const maxN = plan.grid[plan.grid.length - 1]!;
  for (const P of plan.contexts) {
    if (P + maxN > model.config.maxPositionEmbeddings) {
      throw new InputError(`a context of ${P} rows plus a step of ${maxN} rows exceeds the model's ${model.config.maxPositionEmbeddings} positions; lower --contexts or --max-n`);
    }
  }
  const inputs: ForwardInput[][] = []; // [context][n]
  for (const [c, P] of plan.contexts.entries()) {
    const cache = newCache(model);
    if (P > 0) await prefill(model, spreadIds(P, V, 1 + c), cache);
    inputs.push(plan.grid.map((n) => ({ embeds: model.embed(spreadIds(n, V, 100 + n)), positions: Array.from({ length: n }, (_, i) => P + i), mask: causalMask(n, P), cache })));
  }
  // Every other round backwards: no size always runs right after the same one (or a context switch).
  const samples = await timeInRounds(
    inputs.map((perN) => perN.map((input) => () => model.forward(input))),
    { warmupRounds: plan.warmupRounds, repeats: plan.repeats, onCall: onForward },
  ); // [context][n][repeat]
  return plan.grid.map((n, i) => {
    const perContext = plan.contexts.map((_, c) => spread(samples[c]![i]!));
    return { n, perContext, meanMs: perContext.reduce((sum, s) => sum + s.medianMs, 0) / perContext.length };
  });
}

/** A forward's latency against its rows: measured points, linear in between and beyond. */
export class LatencyCurve {
  /** [(rows, ms)], rows increasing. */
  readonly points: readonly { rows: number; ms: number }[];

  constructor(points: readonly { rows: number; ms: number }[]) {
    if (points.length === 0) throw new InputError('a latency curve needs at least one point');
    this.points = [...points].sort((a, b) => a.rows - b.rows);
    for (const p of this.points) if (!(p.rows >= 1 && p.ms > 0)) throw new InputError(`latency point (${p.rows} rows, ${p.ms} ms) is not positive`);
  }

  /** Milliseconds of one forward of `rows` rows. */
  at(rows: number): number {
    const p = this.points;
    if (p.length === 1) return p[0]!.ms * Math.max(1, rows / p[0]!.rows);
    let i = 1;
    while (i < p.length - 1 && p[i]!.rows < rows) i++;
    const a = p[i - 1]!;
    const b = p[i]!;
    const ms = a.ms + ((b.ms - a.ms) * (rows - a.rows)) / (b.rows - a.rows);
    return Math.max(ms, p[0]!.ms); // below the first point, no cheaper than it
  }
}


/** The curve of measured rows (mean over contexts of the median). */
export function latencyCurve(rows: readonly LatencyRow[]): LatencyCurve {
  return new LatencyCurve(rows.map((r) => ({ rows: r.n, ms: r.meanMs })));
}
