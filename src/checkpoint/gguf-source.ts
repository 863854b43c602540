/**
 * A LLaMA-family GGUF file seen as a TensorSource with Hugging Face names, shapes and row order, so the
 * rest of ppd treats it like a safetensors checkpoint: readF32 dequantises; readBlockQuantized
 * hands every quantized matrix over as stored (rows reordered, never requantized; quant.ts);
 * readStoredRows reads a table's rows from the file as lookups need them (the embedding table
 * stays quantized, and on disk: the file stays open until the rows are closed).
 *
 * Tensors outside the LLaMA layout keep their GGUF names, so checkTensors reports them by name.
 */
import { FormatError } from '../errors.ts';
import type { LlamaConfig } from '../model/config.ts';
import type { BlockQuantized, StoredRows, TensorInfo, TensorSource } from '../format/tensor-source.ts';
import { isQuantType } from '../format/gguf/codes.ts';
import { byteSize } from '../format/gguf/ggml-types.ts';
import { gatherRows, ggufRowOfHfRow, hfTensorName, permutedHeads, ROPE_FREQS } from './gguf-tensors.ts';
import { dequantize, toBlockQuantized } from '../format/gguf/quant.ts';
import type { GgufFile, GgufTensorInfo } from '../format/gguf/read.ts';

interface Entry extends TensorInfo {
  stored: GgufTensorInfo;
  /** For q_proj/k_proj: HF row r is stored row sourceRow[r]. */
  sourceRow?: Int32Array;
}

function entryOf(stored: GgufTensorInfo, config: LlamaConfig): Entry {
  const name = hfTensorName(stored.name) ?? stored.name;
  const shape = [...stored.dims].reverse();
  const heads = permutedHeads(name, config);
  // A misshapen q/k cannot be unpermuted; checkTensors rejects its shape before anyone reads it.
  const permutable = heads !== undefined && shape.length <= 2 && shape[0]! % (2 * heads) === 0;
  return { name, dtype: stored.type.name, shape, stored, sourceRow: permutable ? ggufRowOfHfRow(shape[0], heads) : undefined };
}

/**
 * The tensors of an open LLaMA-family GGUF file; closing the source closes the file. rope_freqs
 * is config, not a weight (gguf-config.ts reads it), so it is not listed.
 */
export function llamaGgufSource(file: GgufFile, config: LlamaConfig): TensorSource {
  const stored = file.tensors.filter((t) => t.name !== ROPE_FREQS);
  const entries = new Map(stored.map((t) => [hfTensorName(t.name) ?? t.name, entryOf(t, config)]));
  const get = (name: string): Entry => {
    const entry = entries.get(name);
    if (!entry) throw new FormatError(file.path, `no tensor "${name}"`);
    return entry;
  };
  return {
    origin: file.path,
    stamp: file.stamp,
    list: () => [...entries.values()].map(({ name, dtype, shape }) => ({ name, dtype, shape: [...shape] })),
    readF32(name: string): Float32Array {
      const { stored, shape, sourceRow } = get(name);
      const values = dequantize(stored.type.name, file.readBytes(stored), stored.elements);
      return sourceRow ? gatherRows(values, shape[1] ?? 1, sourceRow) : values;
    },
    readBlockQuantized(name: string): BlockQuantized | undefined {
      const { stored, shape, sourceRow } = get(name);
      const type = stored.type.name;
      if (!isQuantType(type) || shape.length !== 2) return undefined;
      return toBlockQuantized(type, file.readBytes(stored), shape[0], shape[1], sourceRow);
    },
    readStoredRows(name: string): StoredRows | undefined {
      const { stored, shape, sourceRow } = get(name);
      // F32 rows are already what a lookup returns; permuted (q/k) rows are never looked up.
      if (stored.type.name === 'F32' || shape.length !== 2 || sourceRow) return undefined;
      const [rows, cols] = shape as [number, number];
      const type = stored.type.name;
      const rowBytes = byteSize(stored.type, cols);
      const release = file.retain();
      return {
        rows,
        cols,
        rowBytes,
        residentBytes: 0,
        readRow: (index, into) => file.readPart(stored, index * rowBytes, into.subarray(0, rowBytes)),
        widen: (row, out) => out.set(dequantize(type, row, cols)),
        close: release,
      };
    },
    close: () => file.close(),
  };
}
