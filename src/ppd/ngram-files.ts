/**
 * Static n-gram tables (ngram-table.ts) by path, on Node: the file's place in an adapter folder,
 * reading it checked against the model it will be used with, and writing it atomically.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { FormatError } from '../errors.ts';
import { writeFileAtomic } from '../format/atomic.ts';
import { openForReading } from '../format/file-io.ts';
import { NgramTable, type ExpectedBinding } from './ngram-table.ts';

/** The table's file in an adapter folder: decoding with the adapter uses it unless told otherwise. */
export const NGRAM_FILE = 'ngram.bin';

/** The command that builds a table for `modelDir` into `out` (for error messages and notices). */
export function ngramBuildCommand(modelDir: string, out: string): string {
  return `ppd ngram build --model ${modelDir} --data TEXT --out ${out}`;
}

/**
 * Reads the table at `path`; with `expected`, refuses one built for another tokenizer or model
 * (FormatError naming the file, the mismatch and the command that rebuilds it).
 */
export function loadNgramTable(path: string, expected?: { binding: ExpectedBinding; modelDir: string }): NgramTable {
  if (!existsSync(path)) throw new FormatError(path, 'no n-gram table here');
  const file = openForReading(path);
  try {
    const table = NgramTable.read(file);
    if (expected) table.checkBinding(expected.binding, path, ngramBuildCommand(expected.modelDir, path));
    return table;
  } finally {
    file.close();
  }
}

export function saveNgramTable(path: string, bytes: Uint8Array): void {
  writeFileAtomic(path, bytes);
}

/** The adapter folder's table, when it has one. */
export function adapterNgramFile(adapterDir: string): string | undefined {
  const path = join(adapterDir, NGRAM_FILE);
  return existsSync(path) ? path : undefined;
}
