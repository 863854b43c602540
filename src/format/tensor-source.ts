/**
 * TensorSource: read-only access to a checkpoint's named tensors, one tensor at a time.
 *
 * Loading never holds a whole checkpoint in memory: the graph builder asks for one tensor,
 * converts it, writes it out, and lets it go. Sources convert F16/BF16 (and, for GGUF, any
 * quantized type) to F32 on read.
 *
 * A source whose tensor is stored block-quantized (every GGUF quantized type) also offers it
 * through `readBlockQuantized`, in the form ONNX Runtime's MatMulNBits multiplies by, so the
 * graph keeps the weight quantized, exactly as stored, instead of expanding it to F32 and
 * quantizing it again (which would round a second time). `readRows` hands over a few rows of
 * any tensor as F32 without widening the rest (an embedding lookup of a quantized table).
 */

/** The float storage types (all that safetensors files hold here). */
export type FloatDType = 'F32' | 'F16' | 'BF16';
/** Storage types: the float types and the GGUF (ggml) quantized types ppd reads. */
export type DType = FloatDType | 'Q8_0' | 'Q4_0' | 'Q4_1' | 'Q5_0' | 'Q5_1' | 'Q2_K' | 'Q3_K' | 'Q4_K' | 'Q5_K' | 'Q6_K';

export interface TensorInfo {
  name: string;
  dtype: DType;
  /** Hugging Face (PyTorch) order: a linear weight is [out, in]. */
  shape: number[];
}

/**
 * A matrix [rows, cols] (a linear weight [out, in]) quantized in blocks of `blockSize` along
 * each row: element c of row r, in block b = floor(c / blockSize), stands for
 *
 *   value = scales[r, b] * (q - zeroPoint) - offsets[r, b]      (offsets absent: 0)
 *
 * where q is the unsigned stored integer. This is MatMulNBits' layout (one zero point for the
 * whole matrix, which the graph spreads over MatMulNBits' per-block zero points) plus an offset
 * per block, which MatMulNBits lacks and the graph adds as a second, 1/blockSize-sized product.
 * Every GGUF quantized type fits exactly (format/gguf/codes.ts): Q8_0 is 8 bits with zero point
 * 128, Q4_0 4 bits with 8, Q4_K 4 bits with zero point 0 and offsets dmin * min, and so on.
 */
export interface BlockQuantized {
  bits: 4 | 8;
  /** A power of 2, at least 16 (MatMulNBits' rule). */
  blockSize: number;
  rows: number;
  cols: number;
  /**
   * [rows, ceil(cols / blockSize), blockSize * bits / 8] bytes. For 4 bits, element 2i of a block
   * is the low nibble of byte i and element 2i+1 the high nibble (MatMulNBits packing).
   */
  data: Uint8Array;
  /** [rows, ceil(cols / blockSize)] */
  scales: Float32Array;
  /** The stored integer that means 0, below 2^bits; MatMulNBits' default is 2^(bits-1). */
  zeroPoint: number;
  /** [rows, ceil(cols / blockSize)], subtracted after scaling (GGUF's minimums); absent: none. */
  offsets?: Float32Array;
  /**
   * The same offsets as integers under one scale per `group` blocks, where they have that form
   * (the K-quants' dmin * min): offsets[r, b] = scales[r, floor(b / group)] * codes[r, b]. Lets
   * the graph multiply by them in 4/8 bits instead of F32.
   */
  offsetCodes?: { codes: Uint8Array; scales: Float32Array; group: number };
}

export interface TensorSource {
  /** Where the tensors come from (a path), for error messages. */
  readonly origin: string;
  /**
   * What identifies this version of the checkpoint's files (names, sizes, modification times),
   * for caches of graphs compiled from it; absent for tensors that live in memory, which the
   * origin alone names.
   */
  readonly stamp?: string;
  /** Every tensor the source holds, by name. */
  list(): TensorInfo[];
  /** The tensor as F32, row-major in its stored shape. Throws FormatError if absent or corrupt. */
  readF32(name: string): Float32Array;
  /**
   * The tensor in its stored block-quantized form, when it is stored as one that BlockQuantized
   * describes exactly; undefined otherwise (then use readF32). Optional: float-only sources omit it.
   */
  readBlockQuantized?(name: string): BlockQuantized | undefined;
  /**
   * The tensor's rows as stored, for row-wise F32 lookups (`rowsOf` in rows.ts): undefined where
   * the source has no cheaper form than readF32. Optional: float-only sources omit it.
   */
  readStoredRows?(name: string): StoredRows | undefined;
  /** Releases file handles. */
  close(): void;
}

/**
 * A matrix [rows, cols] in its stored (quantized) form, each row a whole number of blocks, whose
 * single rows are read and widened to F32 on demand: an embedding table of a quantized file costs
 * at most its file size, not four bytes per element, and nothing at all where the rows are read
 * from the file as they are needed (a GGUF file's).
 */
export interface StoredRows {
  rows: number;
  cols: number;
  /** Bytes of one row. */
  rowBytes: number;
  /** Bytes of the table held in memory: rows * rowBytes when it is, 0 when rows are read from the file. */
  residentBytes: number;
  /** Copies stored row `index` into `into` (rowBytes bytes). */
  readRow(index: number, into: Uint8Array): void;
  /** Widens one stored row (rowBytes bytes) into `out` (cols floats). */
  widen(row: Uint8Array, out: Float32Array): void;
  /** Releases what reading rows needs (an open file); rows cannot be read afterwards. */
  close(): void;
}

/** StoredRows over a table held in memory, `bytes` = [rows * rowBytes]. */
export function rowsInMemory(bytes: Uint8Array, rows: number, cols: number, rowBytes: number, widen: StoredRows['widen']): StoredRows {
  return {
    rows,
    cols,
    rowBytes,
    residentBytes: bytes.byteLength,
    readRow: (index, into) => into.set(bytes.subarray(index * rowBytes, (index + 1) * rowBytes)),
    widen,
    close: () => {},
  };
}
