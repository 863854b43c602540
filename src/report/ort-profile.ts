/**
 * ONNX Runtime's profile (the Chrome-trace JSON it writes when a session is created with
 * profiling on, RuntimeOptions.profilePrefix), summed: kernel time per run by op type, or by any
 * other key of a kernel event (its operands' shapes, to tell one weight matrix from another).
 * Parsing only; the benchmarks and scripts run the sessions.
 */

/** One event of the trace (times in microseconds). */
export interface TraceEvent {
  cat: string;
  name: string;
  ts: number;
  dur: number;
  args?: {
    op_name?: string;
    /** One entry per input, e.g. { float: [1, 2048] }. */
    input_type_shape?: Record<string, number[]>[];
  };
}

export interface KernelGroup {
  key: string;
  nodesPerRun: number;
  msPerRun: number;
  /** Of the kernel time of a run. */
  share: number;
}

export interface KernelSummary {
  /** Runs summed (after the skipped ones). */
  runs: number;
  /** Mean wall time of a run (ORT's model_run events). */
  runMs: number;
  /** Sum of the kernel times of a run; runMs − kernelMs is ORT's own work between kernels. */
  kernelMs: number;
  /** Most time first. */
  groups: KernelGroup[];
}

/** A kernel event's op type. */
export const opType = (e: TraceEvent): string => e.args?.op_name ?? 'unknown';

/** A kernel event's op type and the shapes of its first `inputs` operands as the profile records them: "MatMulNBits [1,2048] [5632,64]". */
export function opAndShapes(e: TraceEvent, inputs = 2): string {
  const shapes = (e.args?.input_type_shape ?? []).slice(0, inputs).map((entry) => `[${(Object.values(entry)[0] ?? []).join(',')}]`);
  return [opType(e), ...shapes].join(' ');
}

/** Sums the kernel times of the runs after the first `skip` (warm-ups) by `keyOf` (default: op type). */
export function sumKernels(events: readonly TraceEvent[], options: { skip?: number; keyOf?: (e: TraceEvent) => string } = {}): KernelSummary {
  const keyOf = options.keyOf ?? opType;
  const runs = events
    .filter((e) => e.cat === 'Session' && e.name === 'model_run')
    .sort((x, y) => x.ts - y.ts)
    .slice(options.skip ?? 0);
  if (runs.length === 0) throw new Error('the ORT profile holds no model_run after the warm-up');
  const inRun = (e: TraceEvent) => runs.some((r) => e.ts >= r.ts && e.ts <= r.ts + r.dur);
  const byKey = new Map<string, { us: number; nodes: number }>();
  for (const e of events) {
    if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time') || !e.args?.op_name || !inRun(e)) continue;
    const key = keyOf(e);
    const entry = byKey.get(key) ?? { us: 0, nodes: 0 };
    entry.us += e.dur;
    entry.nodes++;
    byKey.set(key, entry);
  }
  const perRunMs = (us: number) => us / runs.length / 1000;
  const kernelMs = perRunMs([...byKey.values()].reduce((sum, o) => sum + o.us, 0));
  const groups = [...byKey]
    .map(([key, o]) => ({ key, nodesPerRun: o.nodes / runs.length, msPerRun: perRunMs(o.us), share: perRunMs(o.us) / kernelMs }))
    .sort((x, y) => y.msPerRun - x.msPerRun);
  return { runs: runs.length, runMs: perRunMs(runs.reduce((sum, r) => sum + r.dur, 0)), kernelMs, groups };
}
