/**
 * The Node side of GraphBuilder's external data: tensors appended to a file, flushed to disk
 * when the graph is finished. The model file must be saved in the same folder (ONNX names the
 * data file relative to the model).
 */
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { basename } from 'node:path';
import type { ExternalDataSink } from './builder.ts';

export function fileSink(path: string): ExternalDataSink {
  const fd = openSync(path, 'w');
  let position = 0;
  return {
    location: basename(path),
    append(bytes: Uint8Array): void {
      let written = 0;
      while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written, position + written);
      position += bytes.length;
    },
    close(): void {
      fsyncSync(fd);
      closeSync(fd);
    },
  };
}
