/**
 * TensorSource: read-only access to a checkpoint's named tensors, one tensor at a time.
 *
 * Loading never holds a whole checkpoint in memory: the graph builder asks for one tensor,
 * converts it, writes it out, and lets it go. Sources convert F16/BF16 to F32 on read.
 */

export type DType = 'F32' | 'F16' | 'BF16';

export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
}

export interface TensorSource {
  /** Where the tensors come from (a path), for error messages. */
  readonly origin: string;
  /** Every tensor the source holds, by name. */
  list(): TensorInfo[];
  /** The tensor as F32, row-major in its stored shape. Throws FormatError if absent or corrupt. */
  readF32(name: string): Float32Array;
  /** Releases file handles. */
  close(): void;
}
