/**
 * The two things checkpoint and model readers need from storage, on Node and in a browser alike:
 * a file whose bytes can be read at any position (`ReadableFile`), and a folder of such files by
 * name (`Folder`). Node opens them from paths (file-io.ts); a browser worker from Blobs, the
 * files a user picked or fetched ones (blob-file.ts). Reads are synchronous: the readers parse a
 * header and then one tensor at a time, and both platforms can read that way (positioned reads
 * on a descriptor; FileReaderSync in a worker).
 */
import { FormatError } from '../errors.ts';

export interface ReadableFile {
  /** Its path (or the name a browser knows it by), for error messages. */
  readonly name: string;
  readonly size: number;
  /** What identifies this version of the bytes (name, size, modification time), for cache keys. */
  readonly stamp: string;
  /** Fills `dst` from byte `position`; a FormatError when the file ends first. */
  read(dst: Uint8Array, position: number): void;
  close(): void;
}

/** A folder's files by name (a model folder, an adapter folder). */
export interface Folder {
  /** Its path or label, for error messages. */
  readonly path: string;
  has(name: string): boolean;
  /** How the file `name` in it is named in messages (its path on Node). */
  nameOf(name: string): string;
  /** The file `name` in it; a FormatError naming it when it is missing or unreadable. */
  open(name: string): ReadableFile;
}

/** `length` bytes from `position`, in a fresh buffer (so typed views over it are aligned). */
export function readBytes(file: ReadableFile, position: number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  file.read(bytes, position);
  return bytes;
}

/** The whole file as UTF-8 text. */
export function readText(file: ReadableFile): string {
  return new TextDecoder('utf-8').decode(readBytes(file, 0, file.size));
}

/** Parses JSON `text` read from `file`; FormatError if it is malformed. */
export function parseJson(text: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new FormatError(file, `malformed JSON: ${(err as Error).message}`);
  }
}

/** `value` as a JSON object; FormatError naming `file` if it is anything else. */
export function jsonObject(value: unknown, file: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new FormatError(file, 'must hold a JSON object at the top level');
  }
  return value as Record<string, unknown>;
}

/** The text of `name` in `folder` (the file is closed again). */
export function readFolderText(folder: Folder, name: string): string {
  const file = folder.open(name);
  try {
    return readText(file);
  } finally {
    file.close();
  }
}

/** The JSON document `name` in `folder`; FormatError naming the file if it is missing or malformed. */
export function readFolderJson(folder: Folder, name: string): unknown {
  const file = folder.open(name);
  try {
    return parseJson(readText(file), file.name);
  } finally {
    file.close();
  }
}

/** Whether this machine stores numbers little-endian (the formats ppd reads are). */
export const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
