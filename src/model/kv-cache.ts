/**
 * KVCache: the keys and values of the rows a session has kept, per layer, in TypeScript.
 *
 * Layout per layer: [capacity, K, D] row-major (K = key/value heads, D = head dim), so the first
 * `length` rows are one contiguous prefix that is handed to the forward without copying. The
 * verbs are the ones verification needs: append the rows a forward produced (all, or a chosen
 * subset in order: the accepted path of a tree), and truncate to drop the newest rows (a
 * speculative drafter's rejected guesses). One cache per generation session; the model holds
 * none.
 */
import { InputError } from '../errors.ts';

/** What a forward reads of a sequence's past: P rows of keys and values per layer, [P, K, D] each. */
export interface PastRows {
  readonly length: number;
  pastKeys(layer: number): Float32Array;
  pastValues(layer: number): Float32Array;
}

/**
 * What a decoder needs of its sequence's cache: read the past, append the rows it keeps from a
 * forward (all, or the listed ones in order), drop the newest. KVCache is one; a paged store
 * shared by many sequences can be another.
 */
export interface SequenceCache extends PastRows {
  append(newKeys: Float32Array[], newValues: Float32Array[], rowIndices?: number[]): void;
  truncate(length: number): void;
}

export class KVCache implements SequenceCache {
  private keys: Float32Array[];
  private values: Float32Array[];
  private capacity: number;
  private rows = 0;
  /** Floats per row per layer: K * D. */
  readonly rowSize: number;

  constructor(readonly numLayers: number, numKvHeads: number, headDim: number, initialCapacity = 64) {
    this.rowSize = numKvHeads * headDim;
    this.capacity = Math.max(1, initialCapacity);
    this.keys = Array.from({ length: numLayers }, () => new Float32Array(this.capacity * this.rowSize));
    this.values = Array.from({ length: numLayers }, () => new Float32Array(this.capacity * this.rowSize));
  }

  /** Number of rows held. */
  get length(): number {
    return this.rows;
  }

  /** The held keys of one layer, [length, K, D], a view (valid until the next mutation). */
  pastKeys(layer: number): Float32Array {
    return this.keys[layer]!.subarray(0, this.rows * this.rowSize);
  }

  pastValues(layer: number): Float32Array {
    return this.values[layer]!.subarray(0, this.rows * this.rowSize);
  }

  /**
   * Appends rows from a forward's outputs (per layer [T, K, D]). With `rowIndices`, appends only
   * those rows, in that order (e.g. the accepted path of a tree); otherwise all T rows.
   */
  append(newKeys: Float32Array[], newValues: Float32Array[], rowIndices?: number[]): void {
    if (newKeys.length !== this.numLayers || newValues.length !== this.numLayers) {
      throw new InputError(`KVCache.append: expected ${this.numLayers} layers, got ${newKeys.length}`);
    }
    const available = newKeys[0]!.length / this.rowSize;
    const rows = rowIndices ?? Array.from({ length: available }, (_, i) => i);
    for (const r of rows) {
      if (!Number.isInteger(r) || r < 0 || r >= available) {
        throw new InputError(`KVCache.append: row ${r} is outside the ${available} new rows`);
      }
    }
    this.reserve(this.rows + rows.length);
    for (let layer = 0; layer < this.numLayers; layer++) {
      copyRows(newKeys[layer]!, rows, this.keys[layer]!, this.rows, this.rowSize);
      copyRows(newValues[layer]!, rows, this.values[layer]!, this.rows, this.rowSize);
    }
    this.rows += rows.length;
  }

  /** Drops every row at index >= length. */
  truncate(length: number): void {
    if (!Number.isInteger(length) || length < 0 || length > this.rows) {
      throw new InputError(`KVCache.truncate: length ${length} is outside 0..${this.rows}`);
    }
    this.rows = length;
  }

  private reserve(rows: number): void {
    if (rows <= this.capacity) return;
    let capacity = this.capacity;
    while (capacity < rows) capacity *= 2;
    const grow = (old: Float32Array) => {
      const next = new Float32Array(capacity * this.rowSize);
      next.set(old.subarray(0, this.rows * this.rowSize));
      return next;
    };
    this.keys = this.keys.map(grow);
    this.values = this.values.map(grow);
    this.capacity = capacity;
  }
}

function copyRows(src: Float32Array, rows: number[], dst: Float32Array, dstRow: number, size: number): void {
  rows.forEach((r, i) => dst.set(src.subarray(r * size, (r + 1) * size), (dstRow + i) * size));
}
