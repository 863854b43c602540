/**
 * Positioned whole-buffer file IO for checkpoint readers and writers: open with a FormatError
 * naming the file, read exactly (a short read means truncation), write everything, and write a
 * file atomically piece by piece (atomic.ts does it for data already in memory). Buffers over
 * 2 GiB go in chunks, as readSync/writeSync move at most 2^31 - 1 bytes per call; positions are
 * plain numbers, exact to 2^53.
 *
 * (safetensors.ts and safetensors-write.ts keep their own copies of these for now.)
 */
import { closeSync, fsyncSync, openSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { FormatError } from '../errors.ts';
import { IO_CHUNK_BYTES } from './safetensors.ts';

/** A read-only file descriptor for `path`; FormatError when it is missing or unreadable. */
export function openForReading(path: string): number {
  try {
    return openSync(path, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new FormatError(path, code === 'ENOENT' ? 'file not found' : `cannot open (${code ?? String(err)})`);
  }
}

/** Fills `dst` from the file at `position`; a short read means the file is truncated. */
export function readExactly(fd: number, file: string, dst: Uint8Array, position: number): void {
  let done = 0;
  while (done < dst.length) {
    const got = readSync(fd, dst, done, Math.min(dst.length - done, IO_CHUNK_BYTES), position + done);
    if (got === 0) throw new FormatError(file, `unexpected end of file at byte ${position + done}`);
    done += got;
  }
}

/** Writes all of `bytes` at `position`. */
export function writeAll(fd: number, bytes: Uint8Array, position: number): void {
  let done = 0;
  while (done < bytes.length) {
    done += writeSync(fd, bytes, done, Math.min(bytes.length - done, IO_CHUNK_BYTES), position + done);
  }
}

/**
 * Writes `path` atomically and streaming: `fill` writes a temporary file beside it (through the
 * descriptor it is given), which is flushed to disk and renamed into place; if `fill` throws, the
 * temporary file is removed and `path` is left as it was.
 */
export function writeAtomically<T>(path: string, fill: (fd: number) => T): T {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  let result: T;
  try {
    result = fill(fd);
    fsyncSync(fd); // the rename must not become visible before the bytes are on disk
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, path);
  return result;
}
