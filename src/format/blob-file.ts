/**
 * The browser side of readable-file.ts: Blobs (files a user picked, or files fetched from a
 * server) as ReadableFiles and Folders. Reads are synchronous through FileReaderSync, which only
 * workers have: ppd's page runs the engine in a Web Worker.
 */
import { FormatError } from '../errors.ts';
import type { Folder, ReadableFile } from './readable-file.ts';

/** In workers only (lib.webworker.d.ts, which this project does not load as a whole). */
declare const FileReaderSync: { new (): { readAsArrayBuffer(blob: Blob): ArrayBuffer } };

/** A Blob and what identifies its version (a File's lastModified; a fetched file's ETag or Last-Modified). */
export interface VersionedBlob {
  blob: Blob;
  version: string;
}

/** `blob` as a ReadableFile named `name` (a path as the user or the server knows it). */
export function blobFile(name: string, { blob, version }: VersionedBlob): ReadableFile {
  let open = true;
  return {
    name,
    size: blob.size,
    stamp: `${name}:${blob.size}:${version}`,
    read(dst: Uint8Array, position: number): void {
      if (!open) throw new Error(`${name}: read after close()`);
      if (position + dst.length > blob.size) throw new FormatError(name, `unexpected end of file at byte ${Math.max(position, blob.size)}`);
      dst.set(new Uint8Array(new FileReaderSync().readAsArrayBuffer(blob.slice(position, position + dst.length))));
    },
    close(): void {
      open = false;
    },
  };
}

/** A File the user picked, versioned by its modification time. */
export const pickedFile = (file: File): VersionedBlob => ({ blob: file, version: String(file.lastModified) });

/** Files by name as a Folder labelled `path` (files are named `path/name` in messages). */
export function blobFolder(path: string, files: ReadonlyMap<string, VersionedBlob>): Folder {
  return {
    path,
    has: (name) => files.has(name),
    nameOf: (name) => `${path}/${name}`,
    open(name: string): ReadableFile {
      const file = files.get(name);
      if (!file) throw new FormatError(`${path}/${name}`, 'file not found');
      return blobFile(`${path}/${name}`, file);
    },
  };
}
