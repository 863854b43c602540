/**
 * Positioned whole-buffer file IO for checkpoint readers and writers: open with a FormatError
 * naming the file, read exactly (a short read means truncation), and write everything (atomic.ts
 * makes whole files appear at once). Buffers over
 * 2 GiB go in chunks, as readSync/writeSync move at most 2^31 - 1 bytes per call; positions are
 * plain numbers, exact to 2^53. Shared by the safetensors and GGUF readers and writers.
 */
import { openSync, readSync, writeSync } from 'node:fs';
import { FormatError } from '../errors.ts';

/** readSync/writeSync move at most 2^31-1 bytes per call, so big buffers go in chunks. */
export const IO_CHUNK_BYTES = 1 << 30;

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
