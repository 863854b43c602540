/**
 * KVCache: the keys and values of the rows a session has kept, per layer, in TypeScript.
 *
 * Layout per layer: [capacity, K, D] row-major (K = key/value heads, D = head dim), so the first
 * `length` rows are one contiguous prefix that is handed to the forward without copying. The
 * verbs are the ones verification needs: append the rows a forward produced (all or a chosen
 * subset), truncate to drop the newest rows, and compact to keep an ordered subset of the
 * newest rows (the accepted path of a tree). One cache per generation session; the model holds
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

  /**
   * Keeps, in order, the rows `from + keep[i]` and drops the other rows at or after `from`:
   * the rows of a verified tree that lie on the accepted path. `keep` must be increasing, so
   * each row moves towards the front and none is overwritten before it is read.
   */
  compact(from: number, keep: number[]): void {
    if (!Number.isInteger(from) || from < 0 || from > this.rows) {
      throw new InputError(`KVCache.compact: start ${from} is outside 0..${this.rows}`);
    }
    keep.forEach((k, i) => {
      if (!Number.isInteger(k) || from + k >= this.rows || (i > 0 && k <= keep[i - 1]!) || k < 0) {
        throw new InputError(`KVCache.compact: keep list ${JSON.stringify(keep)} is not increasing within the cache`);
      }
    });
    const size = this.rowSize;
    for (let layer = 0; layer < this.numLayers; layer++) {
      for (const store of [this.keys[layer]!, this.values[layer]!]) {
        keep.forEach((k, i) => {
          if (k !== i) store.copyWithin((from + i) * size, (from + k) * size, (from + k + 1) * size);
        });
      }
    }
    this.rows = from + keep.length;
  }

  /** Bytes held by the cache's buffers. */
  get bytes(): number {
    return 2 * this.numLayers * this.capacity * this.rowSize * 4;
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
