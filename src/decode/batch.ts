/**
 * Several sequences' rows in one forward. Each sequence brings a RowsPlan (rows.ts: its rows'
 * embeddings, positions after its own cached length, which of its rows each row sees) and the
 * store rows that hold its past (a PagedSequence of the one KVPages store every sequence of the
 * batch lives in). The forward's input is the plans' rows one after another; its past is the
 * whole store (no copy); its mask is block-diagonal: a row sees its own sequence's past rows and,
 * among the new rows, those its plan's block allows, and nothing of any other sequence. Masked
 * entries get -inf before the softmax, so another sequence's rows add exactly zero to a row's
 * attention; what can differ from running the plan alone is only the order in which the
 * non-zero terms are summed (the row's keys sit elsewhere in a longer row of scores).
 * An adapter's prompt head is per row: the plans' `promptHead.rows` and parents are concatenated
 * (-1, no prompt token, for the rows of plans without one; parents moved by the plan's offset),
 * and the head's feeds, which every plan that has a head must share (one adapter: PpdDecoder lays
 * it out once), are passed once.
 *
 * Shape legend: T = rows of the batch (Σ n), E = the store's rows in use (its `length`), S = E + T,
 * V = vocabulary, K = key/value heads, D = head dim.
 */
import { InputError } from '../errors.ts';
import type { PastRows } from '../model/kv-cache.ts';
import type { ForwardOutput, LlamaModel, PromptHeadRows } from '../model/llama-model.ts';
import type { RowsPlan } from './rows.ts';

export interface BatchPart {
  plan: RowsPlan;
  /** [P] the store rows of the sequence's past, in order (PagedSequence.storeRows()); P = its cached length. */
  past: Int32Array;
}

/**
 * One forward over every part's rows; returns each part's slice of the output: logits [n, V] and
 * keys/values per layer [n, K, D], as views into the forward's outputs.
 */
export async function forwardBatch(model: LlamaModel, store: PastRows, parts: readonly BatchPart[]): Promise<ForwardOutput[]> {
  if (parts.length === 0) throw new InputError('forwardBatch: no parts');
  const { hiddenSize: C, vocabSize: V, numKvHeads: K, headDim: D } = model.config;
  const E = store.length;
  const offsets: number[] = [];
  let T = 0;
  for (const { plan, past } of parts) {
    const n = plan.positionOffsets.length;
    if (plan.embeds.length !== n * C || plan.block.length !== n * n) throw new InputError(`forwardBatch: a plan of ${n} rows needs ${n}*C embeds and an ${n}x${n} block`);
    for (const row of past) if (!(row >= 0 && row < E)) throw new InputError(`forwardBatch: past row ${row} is outside the store's ${E} rows`);
    offsets.push(T);
    T += n;
  }
  const S = E + T;
  const embeds = new Float32Array(T * C);
  const positions = new Int32Array(T);
  const mask = new Uint8Array(T * S);
  parts.forEach(({ plan, past }, i) => {
    const n = plan.positionOffsets.length;
    const o = offsets[i]!;
    embeds.set(plan.embeds, o * C);
    for (let t = 0; t < n; t++) {
      positions[o + t] = past.length + plan.positionOffsets[t]!;
      const row = (o + t) * S;
      for (const p of past) mask[row + p] = 1;
      mask.set(plan.block.subarray(t * n, (t + 1) * n), row + E + o);
    }
  });
  const out = await model.forward({ embeds, positions, mask, cache: store, ...batchPromptHead(parts, offsets, T) });
  const size = K * D;
  return parts.map(({ plan }, i) => {
    const n = plan.positionOffsets.length;
    const o = offsets[i]!;
    return {
      logits: out.logits.subarray(o * V, (o + n) * V),
      keys: out.keys.map((k) => k.subarray(o * size, (o + n) * size)),
      values: out.values.map((v) => v.subarray(o * size, (o + n) * size)),
    };
  });
}

/** The batch's prompt-head input: the plans' rows side by side, -1 for plans without a head; none when no plan has one. */
function batchPromptHead(parts: readonly BatchPart[], offsets: readonly number[], T: number): { promptHead?: PromptHeadRows } {
  const feeds = parts.find((p) => p.plan.promptHead)?.plan.promptHead!.feeds;
  if (feeds === undefined) return {};
  const rows = new Int8Array(T).fill(-1);
  const parents = new Int32Array(T).fill(-1);
  parts.forEach(({ plan }, i) => {
    const head = plan.promptHead;
    if (!head) return;
    if (head.feeds !== feeds) throw new InputError('forwardBatch: the plans carry different prompt heads; one forward takes one adapter\'s head');
    const n = plan.positionOffsets.length;
    if (head.rows.length !== n || head.parents.length !== n) throw new InputError(`forwardBatch: a plan of ${n} rows has ${head.rows.length} prompt-head rows and ${head.parents.length} parents`);
    rows.set(head.rows, offsets[i]!);
    // A plan's parents are its own rows: in the batch they sit after the plans before it.
    for (let r = 0; r < n; r++) if (head.rows[r]! >= 0) parents[offsets[i]! + r] = offsets[i]! + head.parents[r]!;
  });
  return { promptHead: { feeds, rows, parents } };
}
