/**
 * What one sequence adds to a forward, apart from how the forward is run: its rows' embeddings,
 * their positions relative to the sequence's cached length, and which of its own rows each row
 * sees (every row also sees all of the sequence's cache: `maskOverCache`). Decoders build these
 * plans (plain steps, prefill chunks, PPD tree steps) and take back their slice of the outputs;
 * `forwardRows` runs one plan alone, and a batching scheduler may run several in one forward.
 * Also the chunked prefill's plans (one per slice of the prompt), shared by every decoder.
 *
 * Shape legend: n = rows of the plan, C = hidden size, V = vocabulary, R = trailing rows.
 */
import { InputError } from '../errors.ts';
import type { PastRows } from '../model/kv-cache.ts';
import { causalBlock, maskOverCache, type ForwardOutput, type LlamaModel, type PromptHeadRows } from '../model/llama-model.ts';

/** Prompts are run in slices of this many rows: attention scores grow with rows x context. */
export const PREFILL_CHUNK = 256;

export interface RowsPlan {
  /** [n, C] */
  embeds: Float32Array;
  /** [n] each row's position minus the sequence's cached length (tree rows share positions). */
  positionOffsets: Int32Array;
  /** [n, n] 0/1, row-major: which of the plan's rows each row sees. */
  block: Uint8Array;
  /** An adapter's prompt head, and [n] which rows are its prompt tokens' (PPD with a head only). */
  promptHead?: PromptHeadRows;
}

/** One forward of `plan` over `cache` (read only): logits [n, V], keys/values [n, K, D] per layer. */
export function forwardRows(model: LlamaModel, cache: PastRows, plan: RowsPlan): Promise<ForwardOutput> {
  const P = cache.length;
  const n = plan.positionOffsets.length;
  return model.forward({ embeds: plan.embeds, positions: Int32Array.from(plan.positionOffsets, (offset) => P + offset), mask: maskOverCache(plan.block, n, P), cache, promptHead: plan.promptHead });
}

/**
 * Rows that ride along with the last slice of a prompt (PPD's prompt tokens): they see every
 * prompt token, and each other as `visibility` says; nothing sees them, and their keys/values
 * are not kept.
 */
export interface TrailingRows {
  /** [R, C] */
  embeds: Float32Array;
  /** [R] each row's position minus the prompt's length (0 = the position after the last prompt token). */
  positionOffsets: ArrayLike<number>;
  /** [R, R] 0/1, row-major: which trailing rows each trailing row sees. */
  visibility: Uint8Array;
  /** A prompt head, and [R] each trailing row's prompt token (their parent is the prompt's last row). */
  promptHead?: Omit<PromptHeadRows, 'parents'>;
}

/** One slice of a prompt's prefill. */
export interface PrefillChunk {
  rows: RowsPlan;
  /** The slice's prompt rows come first: keep rows 0..promptRows-1 of the output. */
  promptRows: number;
  /** Where the next slice starts (ids.length after the last). */
  end: number;
  last: boolean;
}

/** Every decoder conditions on at least one prompt token: the one check of that, for all of them. */
export function checkPromptIds(count: number): void {
  if (count === 0) throw new InputError('the prompt is empty (no tokens to condition on)');
}

/**
 * The slice of `ids` from `start` (at most `maxRows` prompt rows, PREFILL_CHUNK unless a batch
 * scheduler gives less; causal); the last slice carries `trailing` after its prompt rows.
 */
export function prefillChunk(model: LlamaModel, ids: readonly number[], start: number, trailing?: TrailingRows, maxRows = PREFILL_CHUNK): PrefillChunk {
  checkPromptIds(ids.length);
  if (!(Number.isInteger(maxRows) && maxRows >= 1)) throw new InputError(`a prefill chunk needs at least one row, got a budget of ${maxRows}`);
  const C = model.config.hiddenSize;
  const slice = ids.slice(start, start + Math.min(maxRows, PREFILL_CHUNK));
  const T = slice.length;
  const last = start + T >= ids.length;
  const R = last && trailing ? trailing.positionOffsets.length : 0;
  if (R === 0) return { rows: { embeds: model.embed(slice), positionOffsets: Int32Array.from(slice, (_, i) => i), block: causalBlock(T) }, promptRows: T, end: start + T, last };
  if (trailing!.embeds.length !== R * C || trailing!.visibility.length !== R * R) {
    throw new InputError(`trailing rows: embeds must hold R*C = ${R}*${C} floats and visibility R*R entries`);
  }
  // Prompt rows then trailing rows; the trailing rows see every prompt row of the slice (and the cache).
  const n = T + R;
  const embeds = new Float32Array(n * C);
  embeds.set(model.embed(slice));
  embeds.set(trailing!.embeds, T * C);
  const positionOffsets = Int32Array.from({ length: n }, (_, r) => (r < T ? r : T + trailing!.positionOffsets[r - T]!));
  const block = new Uint8Array(n * n);
  for (let t = 0; t < T; t++) block.fill(1, t * n, t * n + t + 1);
  for (let a = 0; a < R; a++) {
    block.fill(1, (T + a) * n, (T + a) * n + T);
    block.set(trailing!.visibility.subarray(a * R, (a + 1) * R), (T + a) * n + T);
  }
  const head = trailing!.promptHead;
  const promptHead = head && {
    feeds: head.feeds,
    rows: Int8Array.from({ length: n }, (_, r) => (r < T ? -1 : head.rows[r - T]!)),
    parents: Int32Array.from({ length: n }, (_, r) => (r < T ? -1 : T - 1)),
  };
  return { rows: { embeds, positionOffsets, block, ...(promptHead ? { promptHead } : {}) }, promptRows: T, end: start + T, last };
}
