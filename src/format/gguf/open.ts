/**
 * GGUF files by path, on Node (file-io.ts opens them); the reader itself (read.ts) takes any
 * ReadableFile, so a browser opens GGUF files from Blobs instead.
 */
import { openForReading } from '../file-io.ts';
import { readGguf, type GgufFile } from './read.ts';

/** A GGUF file by path; its header and metadata are parsed now, tensor data on request. */
export function openGguf(path: string): GgufFile {
  return readGguf(openForReading(path));
}
