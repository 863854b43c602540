/**
 * KVPages: the keys and values of many sequences in one store, so that a batched forward reads
 * every sequence's past as ONE input, without copying any cache per step.
 *
 * Layout per layer: [pages × PAGE_ROWS, K, D] row-major, one preallocated buffer for keys and one
 * for values (K = key/value heads, D = head dim). A sequence owns a list of pages, in order; its
 * row i lives in page pages[i / PAGE_ROWS] at row i % PAGE_ROWS. Pages are handed out lowest
 * first, so the rows in use stay near the front. The whole store up to the last page in use (the
 * `extent`) is what a batched forward takes as its past (`PastRows`); each row of the forward
 * sees only its own sequence's rows (`rowsOf`), which the batch's mask says (decode/batch.ts).
 * Rows of the extent that no sequence uses (the tail of a sequence's last page, pages freed by
 * finished sequences) are masked for every row: they hold zeros or old finite keys/values, whose
 * attention weight is exp(-inf) = 0, so they add exactly nothing.
 *
 * A sequence (`PagedSequence`) is a SequenceCache: decoders append the rows they keep and
 * truncate, as with KVCache; its `pastKeys`/`pastValues` gather its rows into a contiguous copy,
 * for running it alone (tests, a single step), never on the batched path.
 *
 * Growth: when every page is taken the buffers double (one copy of the store); a finished
 * sequence's pages return to the free list (`release`).
 */
import { InputError } from '../errors.ts';
import type { PastRows, SequenceCache } from './kv-cache.ts';

/** Rows per page: small enough that a sequence's unused tail costs little attention, large enough that page lists stay short. */
export const PAGE_ROWS = 16;

export class KVPages implements PastRows {
  private keys: Float32Array[];
  private values: Float32Array[];
  private pageCount: number;
  /** Free pages, kept sorted descending so that pop() hands out the lowest. */
  private readonly free: number[] = [];
  /** pageInUse[p]: whether page p belongs to a sequence. */
  private inUse: Uint8Array;
  /** Floats per row per layer: K * D. */
  readonly rowSize: number;

  constructor(
    readonly numLayers: number,
    numKvHeads: number,
    headDim: number,
    initialPages = 16,
  ) {
    this.rowSize = numKvHeads * headDim;
    this.pageCount = Math.max(1, initialPages);
    const floats = this.pageCount * PAGE_ROWS * this.rowSize;
    this.keys = Array.from({ length: numLayers }, () => new Float32Array(floats));
    this.values = Array.from({ length: numLayers }, () => new Float32Array(floats));
    this.inUse = new Uint8Array(this.pageCount);
    for (let p = this.pageCount - 1; p >= 0; p--) this.free.push(p);
  }

  /** A new, empty sequence in this store. */
  sequence(): PagedSequence {
    return new PagedSequence(this);
  }

  /** Rows up to the end of the last page in use: what a batched forward takes as its past. */
  get length(): number {
    let last = this.pageCount - 1;
    while (last >= 0 && !this.inUse[last]) last--;
    return (last + 1) * PAGE_ROWS;
  }

  /** Keys of the first `length` rows of one layer, [length, K, D], a view (valid until the store grows). */
  pastKeys(layer: number): Float32Array {
    return this.keys[layer]!.subarray(0, this.length * this.rowSize);
  }

  pastValues(layer: number): Float32Array {
    return this.values[layer]!.subarray(0, this.length * this.rowSize);
  }

  /** Pages in the store (in use or free). */
  get pages(): number {
    return this.pageCount;
  }

  /** Bytes held by the store's buffers. */
  get bytes(): number {
    return 2 * this.numLayers * this.pageCount * PAGE_ROWS * this.rowSize * 4;
  }

  /** @internal A free page (the lowest), growing the store when none is left. */
  takePage(): number {
    if (this.free.length === 0) this.grow();
    const page = this.free.pop()!;
    this.inUse[page] = 1;
    return page;
  }

  /** @internal Gives pages back. */
  returnPages(pages: readonly number[]): void {
    for (const page of pages) {
      if (!this.inUse[page]) throw new Error(`KVPages: page ${page} returned twice`);
      this.inUse[page] = 0;
      this.free.push(page);
    }
    this.free.sort((a, b) => b - a);
  }

  /** @internal Copies row `r` of a forward's output (per layer [T, K, D]) into store row `at`. */
  writeRow(newKeys: Float32Array[], newValues: Float32Array[], r: number, at: number): void {
    const size = this.rowSize;
    for (let layer = 0; layer < this.numLayers; layer++) {
      this.keys[layer]!.set(newKeys[layer]!.subarray(r * size, (r + 1) * size), at * size);
      this.values[layer]!.set(newValues[layer]!.subarray(r * size, (r + 1) * size), at * size);
    }
  }

  /** @internal Store rows `rows` of one layer gathered into [rows.length, K, D]. */
  gather(layer: number, rows: ArrayLike<number>, which: 'keys' | 'values'): Float32Array {
    const size = this.rowSize;
    const from = (which === 'keys' ? this.keys : this.values)[layer]!;
    const out = new Float32Array(rows.length * size);
    for (let i = 0; i < rows.length; i++) out.set(from.subarray(rows[i]! * size, (rows[i]! + 1) * size), i * size);
    return out;
  }

  private grow(): void {
    const old = this.pageCount;
    const pages = old * 2;
    const floats = pages * PAGE_ROWS * this.rowSize;
    const grown = (buffer: Float32Array) => {
      const next = new Float32Array(floats);
      next.set(buffer);
      return next;
    };
    this.keys = this.keys.map(grown);
    this.values = this.values.map(grown);
    const inUse = new Uint8Array(pages);
    inUse.set(this.inUse);
    this.inUse = inUse;
    for (let p = pages - 1; p >= old; p--) this.free.push(p);
    this.free.sort((a, b) => b - a);
    this.pageCount = pages;
  }
}

/** One sequence's rows in a KVPages store. */
export class PagedSequence implements SequenceCache {
  private readonly pages: number[] = [];
  private rows = 0;
  private released = false;

  constructor(private readonly store: KVPages) {}

  get length(): number {
    return this.rows;
  }

  /** [length] the store row of each of this sequence's rows, in order. */
  storeRows(): Int32Array {
    const out = new Int32Array(this.rows);
    for (let i = 0; i < this.rows; i++) out[i] = this.storeRow(i);
    return out;
  }

  append(newKeys: Float32Array[], newValues: Float32Array[], rowIndices?: number[]): void {
    if (this.released) throw new Error('PagedSequence.append after release');
    if (newKeys.length !== this.store.numLayers || newValues.length !== this.store.numLayers) {
      throw new InputError(`PagedSequence.append: expected ${this.store.numLayers} layers, got ${newKeys.length}`);
    }
    const available = newKeys[0]!.length / this.store.rowSize;
    const rows = rowIndices ?? Array.from({ length: available }, (_, i) => i);
    for (const r of rows) {
      if (!Number.isInteger(r) || r < 0 || r >= available) throw new InputError(`PagedSequence.append: row ${r} is outside the ${available} new rows`);
    }
    for (const r of rows) {
      if (this.rows === this.pages.length * PAGE_ROWS) this.pages.push(this.store.takePage());
      this.store.writeRow(newKeys, newValues, r, this.storeRow(this.rows));
      this.rows++;
    }
  }

  truncate(length: number): void {
    if (!Number.isInteger(length) || length < 0 || length > this.rows) throw new InputError(`PagedSequence.truncate: length ${length} is outside 0..${this.rows}`);
    this.rows = length;
    const keep = Math.ceil(length / PAGE_ROWS);
    if (keep < this.pages.length) this.store.returnPages(this.pages.splice(keep));
  }

  /** Gives every page back to the store; the sequence cannot be used afterwards. */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.store.returnPages(this.pages.splice(0));
    this.rows = 0;
  }

  /** This sequence's keys of one layer as a contiguous copy [length, K, D] (for running it alone). */
  pastKeys(layer: number): Float32Array {
    return this.store.gather(layer, this.storeRows(), 'keys');
  }

  pastValues(layer: number): Float32Array {
    return this.store.gather(layer, this.storeRows(), 'values');
  }

  private storeRow(i: number): number {
    return this.pages[Math.floor(i / PAGE_ROWS)]! * PAGE_ROWS + (i % PAGE_ROWS);
  }
}
