/**
 * Files on Node: paths opened as ReadableFiles and Folders (readable-file.ts) for the checkpoint
 * readers, the path-taking openers of those readers, and positioned writes for the writers
 * (atomic.ts makes whole files appear at once). Buffers over 2 GiB go in chunks, as
 * readSync/writeSync move at most 2^31 - 1 bytes per call; positions are plain numbers, exact to
 * 2^53. The browser's counterpart is blob-file.ts.
 */
import { closeSync, existsSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { FormatError } from '../errors.ts';
import type { Folder, ReadableFile } from './readable-file.ts';
import { readSafetensors, readShardedSafetensors, type SafetensorsSource } from './safetensors.ts';

/** readSync/writeSync move at most 2^31-1 bytes per call, so big buffers go in chunks. */
export const IO_CHUNK_BYTES = 1 << 30;

/** The file at `path`, open for reading; FormatError when it is missing or unreadable. */
export function openForReading(path: string): ReadableFile {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new FormatError(path, code === 'ENOENT' ? 'file not found' : `cannot open (${code ?? String(err)})`);
  }
  const { size, mtimeMs } = fstatSync(fd);
  let open = true;
  return {
    name: path,
    size,
    stamp: `${path}:${size}:${mtimeMs}`,
    read(dst: Uint8Array, position: number): void {
      if (!open) throw new Error(`${path}: read after close()`);
      let done = 0;
      while (done < dst.length) {
        const got = readSync(fd, dst, done, Math.min(dst.length - done, IO_CHUNK_BYTES), position + done);
        if (got === 0) throw new FormatError(path, `unexpected end of file at byte ${position + done}`);
        done += got;
      }
    },
    close(): void {
      if (open) closeSync(fd);
      open = false;
    },
  };
}

/** The folder at `dir` (its files named by `join(dir, name)` in messages). */
export function nodeFolder(dir: string): Folder {
  return {
    path: dir,
    has: (name) => existsSync(join(dir, name)),
    nameOf: (name) => join(dir, name),
    open: (name) => openForReading(join(dir, name)),
  };
}

/** Writes all of `bytes` at `position`. */
export function writeAll(fd: number, bytes: Uint8Array, position: number): void {
  let done = 0;
  while (done < bytes.length) {
    done += writeSync(fd, bytes, done, Math.min(bytes.length - done, IO_CHUNK_BYTES), position + done);
  }
}

/** A .safetensors file by path; only its header is read now. */
export function openSafetensors(path: string): SafetensorsSource {
  return readSafetensors(openForReading(path));
}

/** A sharded checkpoint by its `model.safetensors.index.json` path (shards beside it). */
export function openShardedSafetensors(indexPath: string): SafetensorsSource {
  return readShardedSafetensors(nodeFolder(dirname(indexPath)), basename(indexPath));
}

