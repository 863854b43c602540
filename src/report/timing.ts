/**
 * Timing measurements shared by `ppd calibrate`, `npm start` and the benchmarks: the spread of
 * a set of samples, and timing calls in interleaved rounds so that a slow spell of the machine
 * lands on every measured case alike instead of skewing one of them.
 */
import { InputError } from '../errors.ts';

export interface Spread {
  medianMs: number;
  minMs: number;
  maxMs: number;
  samples: number;
}

/** Median, min and max of samples (milliseconds, or any unit: the fields only say "Ms"). */
export function spread(samplesMs: readonly number[]): Spread {
  if (samplesMs.length === 0) throw new InputError('spread: no samples');
  const sorted = [...samplesMs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const medianMs = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { medianMs, minMs: sorted[0]!, maxMs: sorted[sorted.length - 1]!, samples: sorted.length };
}

export interface RoundsPlan {
  /** Rounds whose times are dropped. */
  warmupRounds: number;
  /** Timed rounds. */
  repeats: number;
  /** Which groups take their turn, in what order, in round `round` (default: all, in order). */
  groupOrder?: (round: number) => number[];
  /**
   * Every other round runs a group's calls backwards (default), so no call always runs right
   * after the same one; false keeps one order (the engine benchmark's L(T) sweep always did).
   */
  alternate?: boolean;
  /** Runs before a group's turn, untimed (e.g. letting another session's threads go quiet). */
  beforeGroup?: (group: number) => Promise<void>;
  /** Called after every call, timed or not (progress). */
  onCall?: () => void;
}

/**
 * Times every call of every group once per round: groups[g][i] is one measured case (e.g. one
 * forward of n rows over context g). Within a group, every other round runs backwards unless
 * `alternate` is false. Returns the kept samples in ms, [group][call][repeat].
 */
export async function timeInRounds(groups: readonly (readonly (() => Promise<unknown>)[])[], plan: RoundsPlan): Promise<number[][][]> {
  const samples = groups.map((calls) => calls.map(() => [] as number[]));
  for (let round = 0; round < plan.warmupRounds + plan.repeats; round++) {
    for (const g of plan.groupOrder?.(round) ?? groups.keys()) {
      await plan.beforeGroup?.(g);
      const calls = groups[g]!;
      const order = round % 2 === 0 || plan.alternate === false ? [...calls.keys()] : [...calls.keys()].reverse();
      for (const i of order) {
        const start = performance.now();
        await calls[i]!();
        const ms = performance.now() - start;
        if (round >= plan.warmupRounds) samples[g]![i]!.push(ms);
        plan.onCall?.();
      }
    }
  }
  return samples;
}
