/**
 * Opening a model by path on Node: a Hugging Face model directory (model-folder.ts reads it) or
 * a .gguf file (gguf-model.ts), as the same ModelDir.
 */
import { existsSync, statSync } from 'node:fs';
import { FormatError } from '../errors.ts';
import { nodeFolder, openForReading } from '../format/file-io.ts';
import { readGgufModel } from './gguf-model.ts';
import { openModelFolder, type ModelDir } from './model-folder.ts';

export { readJsonFile } from '../format/text-file.ts';
export { readTokenizerJson, type ModelDir } from './model-folder.ts';

/** Opens and validates the model directory (or .gguf file) `dir`. */
export function openModelDir(dir: string): ModelDir {
  const gguf = dir.toLowerCase().endsWith('.gguf');
  if (!existsSync(dir)) throw new FormatError(dir, gguf ? 'GGUF file not found' : 'model directory not found');
  if (!statSync(dir).isDirectory()) {
    if (gguf) return readGgufModel(openForReading(dir));
    throw new FormatError(dir, 'neither a model directory nor a .gguf file');
  }
  return openModelFolder(nodeFolder(dir));
}
