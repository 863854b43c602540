/**
 * How benchmarks time a model's forwards: the random LLaMA shapes they build (weights generated
 * on read, so nothing big is written to disk), loading one with a progress bar, greedy decode
 * after a prompt, and the latency L(T) of T rows over a fixed past. Shared by bench:engine (one
 * model at a time) and bench:quant (several models side by side).
 *
 * Several models are measured in turns: each round, every model in turn runs its share of the
 * forwards (one model's turn is never cut by another's), so a slow spell of the machine lands on
 * all of them alike. Before each turn the other sessions' ORT pool threads are left to go quiet:
 * after a run they spin for tens of milliseconds waiting for more work, and on a 2-core machine
 * those threads take a core from the session being timed (measured: a q8 T = 1 forward took
 * ~20 ms right after an f32 one, ~9 ms after a 100 ms pause). With one model there are no turns.
 *
 * What it is not: a report. Each benchmark derives its own figures and writes its own files.
 *
 * Shape legend: T = rows in one forward, P = rows in the KV cache, V = vocabulary, C = hidden size.
 */
import { loadLlamaModel } from '../src/checkpoint/load.ts';
import type { TensorSource } from '../src/format/tensor-source.ts';
import { parameterCount, type LlamaConfig } from '../src/model/config.ts';
import { KVCache } from '../src/model/kv-cache.ts';
import { causalMask, LlamaModel } from '../src/model/llama-model.ts';
import type { QuantizeMode } from '../src/format/quantize.ts';
import { randomTensorSource } from '../src/checkpoint/random-init.ts';
import { Progress } from '../src/report/progress.ts';
import { fmt, MiB, range, timed, tokenIds } from './harness.ts';
import { spread, timeInRounds, type Spread } from '../src/report/timing.ts';

// ---------------------------------------------------------------------------------------------
// Random model shapes.

/** A model shape: a name and the Hugging Face config.json it is built from. */
export interface RandomShape {
  name: string;
  config: Record<string, unknown>;
}

const LLAMA_DEFAULTS = { model_type: 'llama', vocab_size: 32000, rope_theta: 10000, rms_norm_eps: 1e-5, max_position_embeddings: 2048 };

/** LLaMA-2-style dimensions at ~100M-class size (125M parameters with the untied LM head). */
export const SMALL: RandomShape = {
  name: 'llama-125m',
  config: { ...LLAMA_DEFAULTS, hidden_size: 768, intermediate_size: 2048, num_hidden_layers: 12, num_attention_heads: 12, num_key_value_heads: 4 },
};
/** TinyLlama-1.1B's dimensions. */
export const TINYLLAMA: RandomShape = {
  name: 'tinyllama-1.1b',
  config: { ...LLAMA_DEFAULTS, hidden_size: 2048, intermediate_size: 5632, num_hidden_layers: 22, num_attention_heads: 32, num_key_value_heads: 4 },
};

/** Rows of the decode prompt, and the fixed past of the latency sweep. */
export const PROMPT_ROWS = 64;
export const DECODE_WARMUP_STEPS = 2;
export const LATENCY_WARMUP_ROUNDS = 1;
/** Timed decode steps of one model's turn, when several take turns. */
export const DECODE_TURN_STEPS = 4;
/** Pause before each turn, when several models take turns (see the file header). */
export const SETTLE_MS = 200;
const SEED = 0;

export const maxRssBytes = () => process.resourceUsage().maxRSS * 1024;

// ---------------------------------------------------------------------------------------------
// Loading.

/** `source` with every read reported to `onRead` (bytes), to drive the load progress bar. */
function reportingReads(source: TensorSource, onRead: (bytes: number) => void): TensorSource {
  return {
    origin: source.origin,
    list: () => source.list(),
    readF32: (name) => {
      const data = source.readF32(name);
      onRead(data.byteLength);
      return data;
    },
    close: () => source.close(),
  };
}

/**
 * The random model of `config` (seed 0), compiled into a temporary folder and opened; `quantize`
 * keeps its linear weights in 8- or 4-bit blocks. `ms` covers generating the weights (and
 * quantizing them), writing the ONNX graph and creating the ORT session.
 */
export async function loadRandomModel(config: LlamaConfig, label: string, threads: number, quantize?: QuantizeMode): Promise<{ model: LlamaModel; ms: number }> {
  const { vocabSize: V, hiddenSize: C } = config;
  // loadLlamaModel reads every tensor once to build the graph, then the embedding table again.
  const totalMiB = Math.round(((parameterCount(config) + V * C) * 4) / MiB);
  const progress = new Progress(`${label}: load`, totalMiB, 'MiB');
  let readMiB = 0;
  const source = reportingReads(randomTensorSource(config, SEED), (bytes) => {
    const before = Math.round(readMiB);
    readMiB += bytes / MiB;
    progress.tick(Math.round(readMiB) - before);
  });
  const start = performance.now();
  const model = await loadLlamaModel(config, source, { cacheDir: false, threads, quantize });
  const ms = performance.now() - start;
  const what = quantize ? `weights generated and quantized to ${quantize}` : 'weights generated';
  progress.stop(`${fmt(ms / 1000)} s (${what}, graph written, ORT session created)`);
  return { model, ms };
}

// ---------------------------------------------------------------------------------------------
// Timing forwards.

/** A model under measurement and its own KV cache (decode fills it; the latency sweep reads it). */
export interface Subject {
  name: string;
  model: LlamaModel;
  cache: KVCache;
}

/** A cache that holds the decode prompt, its warm-up steps and `steps` timed steps. */
export function decodeCache(config: LlamaConfig, steps: number): KVCache {
  return new KVCache(config.numLayers, config.numKvHeads, config.headDim, PROMPT_ROWS + DECODE_WARMUP_STEPS + steps);
}

function argmaxRow(logits: Float32Array, row: number, V: number): number {
  let best = 0;
  for (let v = 1; v < V; v++) if (logits[row * V + v]! > logits[row * V + best]!) best = v;
  return best;
}

/** Which subjects go in round `round`, in turn: the order rotates so none always goes first. */
const turnOrder = (n: number, round: number) => range(n).map((i) => (i + round) % n);

/**
 * Before a subject's turn, when several take turns: a pause for the other sessions' threads to go
 * quiet, then one untimed T = 1 forward of this subject (nothing appended) to wake its own.
 */
async function settle(subjects: Subject[], subject: Subject): Promise<void> {
  if (subjects.length === 1) return;
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
  const { model, cache } = subject;
  await model.forward({ embeds: model.embed([0]), positions: [cache.length], mask: causalMask(1, cache.length), cache });
}

/** Runs the PROMPT_ROWS-row prompt into the subject's empty cache; returns its greedy next token. */
async function prefill({ model, cache }: Subject): Promise<number> {
  const V = model.config.vocabSize;
  const out = await model.forward({
    embeds: model.embed(tokenIds(PROMPT_ROWS, V, 1)),
    positions: range(PROMPT_ROWS),
    mask: causalMask(PROMPT_ROWS, 0),
    cache,
  });
  cache.append(out.keys, out.values);
  return argmaxRow(out.logits, PROMPT_ROWS - 1, V);
}

/**
 * Greedy decode after a prompt, for each subject: DECODE_WARMUP_STEPS untimed steps, then `steps`
 * timed ones (step = embed + forward + append + argmax). Returns each subject's step times; the
 * caches are left holding the rows.
 */
export async function measureDecode(subjects: Subject[], steps: number, label: string): Promise<number[][]> {
  const tokens: number[] = [];
  for (const subject of subjects) tokens.push(await prefill(subject));
  const total = DECODE_WARMUP_STEPS + steps;
  const perTurn = subjects.length === 1 ? total : DECODE_TURN_STEPS;
  const samples = subjects.map(() => [] as number[]);
  const progress = new Progress(`${label}: decode`, subjects.length * total, 'tok');
  for (let round = 0, done = 0; done < total; round++, done += perTurn) {
    for (const i of turnOrder(subjects.length, round)) {
      const { model, cache } = subjects[i]!;
      const V = model.config.vocabSize;
      await settle(subjects, subjects[i]!);
      for (let step = done; step < Math.min(done + perTurn, total); step++) {
        const ms = await timed(async () => {
          const out = await model.forward({ embeds: model.embed([tokens[i]!]), positions: [cache.length], mask: causalMask(1, cache.length), cache });
          cache.append(out.keys, out.values);
          tokens[i] = argmaxRow(out.logits, 0, V);
        });
        if (step >= DECODE_WARMUP_STEPS) samples[i]!.push(ms);
        progress.tick();
      }
    }
  }
  const tokPerSecond = (i: number) => `${fmt(1000 / spread(samples[i]!).medianMs, 2)} tok/s`;
  progress.stop(subjects.length === 1 ? `median step ${fmt(spread(samples[0]!).medianMs)} ms, ${tokPerSecond(0)}` : subjects.map((s, i) => `${s.name} ${tokPerSecond(i)}`).join(', '));
  return samples;
}

/**
 * L(T) for each T of `rows` over each subject's past of `cache.length` rows (nothing appended).
 * Rounds go through every T in turn, smallest first (report/timing.ts), so a slow
 * spell of the machine lands on all T alike instead of skewing one ratio; LATENCY_WARMUP_ROUNDS
 * rounds go untimed. Returns each subject's samples by T.
 */
export async function measureLatency(subjects: Subject[], rows: readonly number[], repeats: number, label: string): Promise<Map<number, number[]>[]> {
  const inputs = subjects.map(({ model, cache }) =>
    rows.map((T) => ({
      T,
      forward: { embeds: model.embed(tokenIds(T, model.config.vocabSize, 2)), positions: range(T, cache.length), mask: causalMask(T, cache.length), cache },
    })),
  );
  const rounds = LATENCY_WARMUP_ROUNDS + repeats;
  const progress = new Progress(`${label}: latency sweep`, rounds * subjects.length * rows.length, 'fwd');
  // Subjects take turns (rotating which goes first); each forward never mutates its cache.
  const byGroup = await timeInRounds(
    inputs.map((perT, i) => perT.map(({ forward }) => () => subjects[i]!.model.forward(forward))),
    {
      warmupRounds: LATENCY_WARMUP_ROUNDS,
      repeats,
      alternate: false,
      groupOrder: (round) => turnOrder(subjects.length, round),
      beforeGroup: (i) => settle(subjects, subjects[i]!),
      onCall: () => progress.tick(),
    },
  );
  const samples = byGroup.map((perT) => new Map(rows.map((T, k) => [T, perT[k]!])));
  const last = rows.at(-1)!;
  const ratio = (i: number) => fmt(spread(samples[i]!.get(last)!).medianMs / spread(samples[i]!.get(rows[0]!)!).medianMs, 2);
  progress.stop(subjects.length === 1 ? `L(${last})/L(${rows[0]}) = ${ratio(0)}` : subjects.map((s, i) => `${s.name} L(${last})/L(${rows[0]}) = ${ratio(i)}`).join(', '));
  return samples;
}

/**
 * One T of a latency sweep: ratioToT1 = median L(T) / median L(1); ratioOfMinimums = min L(T) /
 * min L(1), which a busy spell of the machine disturbs less (it only ever adds time).
 */
export interface LatencyRow {
  T: number;
  latency: Spread;
  ratioToT1: number;
  ratioOfMinimums: number;
}

/** measureLatency's samples of one subject as rows, in T order; the first T must be 1. */
export function latencyRows(samples: Map<number, number[]>): LatencyRow[] {
  const l1 = spread(samples.get(1)!);
  return [...samples].map(([T, ms]) => {
    const s = spread(ms);
    return { T, latency: s, ratioToT1: s.medianMs / l1.medianMs, ratioOfMinimums: s.minMs / l1.minMs };
  });
}
