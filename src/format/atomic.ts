/**
 * Atomic file writes: write a temporary file beside the target, flush it to disk, rename it into
 * place. A reader (or a run resumed after a crash) sees the old file or the new one, never half
 * of one. `writeAtomically` streams (checkpoint writers fill the file piece by piece through its
 * descriptor); `writeFileAtomic` writes data already in memory.
 */
import { closeSync, fsyncSync, openSync, renameSync, rmSync } from 'node:fs';
import { writeAll } from './file-io.ts';

/**
 * Writes `path` atomically: `fill` writes a temporary file beside it through the descriptor it
 * is given; the file is flushed to disk and renamed into place. If `fill` throws, the temporary
 * file is removed and `path` is left as it was.
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

export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  writeAtomically(path, (fd) => writeAll(fd, bytes, 0));
}

export function writeJsonAtomic(path: string, value: unknown): void {
  writeFileAtomic(path, JSON.stringify(value, null, 2) + '\n');
}
