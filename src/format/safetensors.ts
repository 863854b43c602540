/**
 * Reading Hugging Face safetensors checkpoints, single-file or sharded, as a TensorSource.
 *
 * File layout: [u64 little-endian N][N bytes of JSON header][data region]. The header maps each
 * tensor name to {dtype, shape, data_offsets: [begin, end]}, offsets relative to the data region;
 * an optional "__metadata__" entry maps strings to strings. Only the header is read at open;
 * readF32 reads one tensor's bytes with positioned reads, so files over 2 GiB work (positions are
 * plain numbers, exact up to 2^53). Every header problem is a FormatError naming the file and the
 * tensor or field. Files come as ReadableFiles (Node: file-io.ts opens them by path; a browser:
 * blob-file.ts). Writing lives in safetensors-write.ts; this file only reads.
 */
import { FormatError } from '../errors.ts';
import { bf16ToF32, f16ToF32 } from './half.ts';
import { littleEndian, parseJson, readText, type Folder, type ReadableFile } from './readable-file.ts';
import { z } from 'zod';
import { failing, looseObject, parseWithSchema, shown, text } from './schema.ts';
import type { FloatDType, TensorInfo, TensorSource } from './tensor-source.ts';

export const ITEM_SIZE: Record<FloatDType, number> = { F32: 4, F16: 2, BF16: 2 };
/** The format's own cap on header size; a larger length means a corrupt or foreign file. */
export const MAX_HEADER_BYTES = 100_000_000;

/** A tensor's info plus where its bytes lie, as absolute file positions [begin, end). */
/** Safetensors hold float tensors only, so their infos say which float type. */
export interface SafetensorsSource extends TensorSource {
  list(): (TensorInfo & { dtype: FloatDType })[];
}

interface StoredTensor extends TensorInfo {
  dtype: FloatDType;
  begin: number;
  end: number;
}

function isSafeCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Validates one header entry; `dataStart` is the data region's file position. */
function parseEntry(file: string, name: string, raw: unknown, dataStart: number, dataSize: number): StoredTensor {
  const where = `tensor "${name}"`;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new FormatError(file, `${where}: header entry must be an object`);
  }
  const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
  if (dtype === undefined) throw new FormatError(file, `${where}: missing "dtype"`);
  if (typeof dtype !== 'string' || !(dtype in ITEM_SIZE)) {
    throw new FormatError(file, `${where}: dtype ${JSON.stringify(dtype)} is not supported (only F32, F16, BF16)`);
  }
  if (shape === undefined) throw new FormatError(file, `${where}: missing "shape"`);
  if (!Array.isArray(shape) || !shape.every(isSafeCount)) {
    throw new FormatError(file, `${where}: "shape" must be a list of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  if (offsets === undefined) throw new FormatError(file, `${where}: missing "data_offsets"`);
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isSafeCount) || offsets[0] > offsets[1]) {
    throw new FormatError(file, `${where}: "data_offsets" must be [begin, end] with begin <= end, got ${JSON.stringify(offsets)}`);
  }
  const [begin, end] = offsets as number[];
  const expectedBytes = shape.reduce((n: number, d: number) => n * d, 1) * ITEM_SIZE[dtype as FloatDType];
  if (end - begin !== expectedBytes) {
    throw new FormatError(
      file,
      `${where}: holds ${end - begin} bytes, but ${dtype} shape [${shape}] needs ${expectedBytes}`,
    );
  }
  if (end > dataSize) {
    throw new FormatError(file, `${where}: data_offsets [${begin}, ${end}] lie beyond the data region (${dataSize} bytes); file truncated?`);
  }
  return { name, dtype: dtype as FloatDType, shape: shape as number[], begin: dataStart + begin, end: dataStart + end };
}

/** Reads and validates the header; returns the tensors in header order. */
function readHeader(source: ReadableFile): StoredTensor[] {
  const { name: file, size: fileSize } = source;
  if (fileSize < 8) throw new FormatError(file, `too short to be safetensors (${fileSize} bytes)`);
  const prefix = new Uint8Array(8);
  source.read(prefix, 0);
  const headerBytes = new DataView(prefix.buffer).getBigUint64(0, true);
  if (headerBytes > BigInt(Math.min(MAX_HEADER_BYTES, fileSize - 8))) {
    throw new FormatError(file, `header length ${headerBytes} is impossible for a ${fileSize}-byte file (not safetensors?)`);
  }
  const headerText = new Uint8Array(Number(headerBytes));
  source.read(headerText, 8);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8').decode(headerText));
  } catch (err) {
    throw new FormatError(file, `malformed JSON header: ${(err as Error).message}`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new FormatError(file, 'header must be a JSON object');
  }
  const dataStart = 8 + headerText.length;
  const tensors: StoredTensor[] = [];
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') continue; // free-form string map; nothing ppd needs from it
    tensors.push(parseEntry(file, name, raw, dataStart, fileSize - dataStart));
  }
  // Overlapping byte ranges mean two tensors would alias; sort by start and compare neighbours.
  const byStart = [...tensors].sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < byStart.length; i++) {
    if (byStart[i].begin < byStart[i - 1].end) {
      throw new FormatError(file, `tensors "${byStart[i - 1].name}" and "${byStart[i].name}" overlap in the data region`);
    }
  }
  return tensors;
}

/** Widens stored bytes to F32. `bytes` must start on a 4-byte boundary of its own buffer. */
function decode(bytes: Uint8Array, dtype: FloatDType): Float32Array {
  if (dtype === 'F32') return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
  const halves = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2);
  return dtype === 'F16' ? f16ToF32(halves) : bf16ToF32(halves);
}

/** Reads one .safetensors file's header; tensors are read on request. Closing the source closes the file. */
export function readSafetensors(file: ReadableFile): SafetensorsSource {
  const path = file.name;
  let tensors: StoredTensor[];
  try {
    if (!littleEndian) throw new Error('ppd reads safetensors only on little-endian hosts');
    tensors = readHeader(file);
  } catch (err) {
    file.close();
    throw err;
  }
  const byName = new Map(tensors.map((t) => [t.name, t]));
  let open = true;
  return {
    origin: path,
    stamp: file.stamp,
    list: () => tensors.map(({ name, dtype, shape }) => ({ name, dtype, shape: [...shape] })),
    readF32(name: string): Float32Array {
      const t = byName.get(name);
      if (!t) throw new FormatError(path, `no tensor named "${name}"`);
      if (!open) throw new Error(`${path}: read of "${name}" after close()`);
      // A fresh Uint8Array starts its own ArrayBuffer, so F32/U16 views over it are aligned;
      // a slice of a shared pool may start at an odd offset.
      const bytes = new Uint8Array(t.end - t.begin);
      file.read(bytes, t.begin);
      return decode(bytes, t.dtype);
    },
    close(): void {
      if (open) file.close();
      open = false;
    },
  };
}

/**
 * Reads a sharded checkpoint from its index (`model.safetensors.index.json` in `folder`), whose
 * `weight_map` maps each tensor name to the shard file (in the same folder) that holds it. The
 * index and the shards must agree exactly: a tensor listed but absent, or present but unlisted,
 * is a FormatError.
 */
const shardIndex = looseObject({
  weight_map: z.record(z.string(), text('a file name'), failing((v) => `must be an object mapping tensor names to shard files, got ${shown(v)}`)),
});

export function readShardedSafetensors(folder: Folder, indexName: string): SafetensorsSource {
  const indexFile = folder.open(indexName);
  const indexPath = indexFile.name;
  let raw: unknown;
  try {
    raw = parseJson(readText(indexFile), indexPath);
  } finally {
    indexFile.close();
  }
  const entries = Object.entries(parseWithSchema(shardIndex, raw, { file: indexPath }).weight_map);
  const shards = new Map<string, SafetensorsSource>(); // shard file name -> its source
  const closeAll = () => shards.forEach((s) => s.close());
  const owner = new Map<string, SafetensorsSource>(); // tensor name -> the shard holding it
  try {
    for (const [name, shardFile] of entries as [string, string][]) {
      let shard = shards.get(shardFile);
      if (!shard) {
        if (!folder.has(shardFile)) {
          throw new FormatError(indexPath, `weight_map names shard "${shardFile}" (for "${name}"), which does not exist`);
        }
        shard = readSafetensors(folder.open(shardFile));
        shards.set(shardFile, shard);
      }
      owner.set(name, shard);
    }
    for (const shard of shards.values()) {
      const held = new Set(shard.list().map((t) => t.name));
      for (const [name, s] of owner) {
        if (s === shard && !held.has(name)) {
          throw new FormatError(shard.origin, `tensor "${name}" is listed in ${indexPath} but absent from this shard`);
        }
      }
      for (const name of held) {
        if (owner.get(name) !== shard) {
          throw new FormatError(shard.origin, `tensor "${name}" is not assigned to this shard by ${indexPath}`);
        }
      }
    }
  } catch (err) {
    closeAll();
    throw err;
  }
  const infos = new Map([...shards.values()].flatMap((s) => s.list().map((t) => [t.name, t] as const)));
  return {
    origin: indexPath,
    stamp: [indexFile.stamp, ...[...shards.values()].map((s) => s.stamp)].join('|'),
    list: () => entries.map(([name]) => ({ ...infos.get(name)!, shape: [...infos.get(name)!.shape] })),
    readF32(name: string): Float32Array {
      const shard = owner.get(name);
      if (!shard) throw new FormatError(indexPath, `no tensor named "${name}" in weight_map`);
      return shard.readF32(name);
    },
    close: closeAll,
  };
}
