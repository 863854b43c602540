/**
 * TensorSource: read-only access to a checkpoint's named tensors, one tensor at a time.
 *
 * Loading never holds a whole checkpoint in memory: the graph builder asks for one tensor,
 * converts it, writes it out, and lets it go. Sources convert F16/BF16 (and, for GGUF, any
 * quantized type) to F32 on read.
 *
 * A source whose tensor is stored block-quantized in a form ONNX Runtime's MatMulNBits can use
 * as is (GGUF Q8_0 and Q4_0) also offers it through `readBlockQuantized`, so the graph keeps the
 * weight quantized instead of expanding it to F32 and quantizing it again (which would not be
 * lossless for Q4_0 re-quantized by another rule).
 */

/** The float storage types (all that safetensors files hold here). */
export type FloatDType = 'F32' | 'F16' | 'BF16';
/** Storage types: the float types and the GGUF (ggml) quantized types ppd reads. */
export type DType = FloatDType | 'Q8_0' | 'Q4_0' | 'Q4_K' | 'Q6_K';

export interface TensorInfo {
  name: string;
  dtype: DType;
  /** Hugging Face (PyTorch) order: a linear weight is [out, in]. */
  shape: number[];
}

/**
 * A matrix [rows, cols] (a linear weight [out, in]) quantized in blocks of `blockSize` along
 * each row, symmetric around a fixed zero point: value = scale * (q - zeroPoint), where q is the
 * unsigned stored integer and zeroPoint = 2^(bits-1) (128 for 8 bits, 8 for 4 bits). This is
 * MatMulNBits' layout with its default zero points, and exactly GGUF's Q8_0 (int8 q + 128) and
 * Q4_0 (q - 8).
 */
export interface BlockQuantized {
  bits: 4 | 8;
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
  /** Releases file handles. */
  close(): void;
}
