/**
 * Reading a whole text or JSON file (config.json, an index, a corpus split) with errors that name
 * the file and what is wrong with it. Not for files too large to hold in memory.
 */
import { readFileSync } from 'node:fs';
import { FormatError } from '../errors.ts';

/** The UTF-8 text of `path`; FormatError if it is missing or unreadable. */
export function readTextFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new FormatError(path, code === 'ENOENT' ? 'file not found' : `cannot read (${code ?? String(err)})`);
  }
}

/** Parses the JSON file at `path`; FormatError if it is missing, unreadable or malformed. */
export function readJsonFile(path: string): unknown {
  const text = readTextFile(path);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new FormatError(path, `malformed JSON: ${(err as Error).message}`);
  }
}

/** Like readJsonFile, but the top level must be a JSON object. */
export function readJsonObject(path: string): Record<string, unknown> {
  const value = readJsonFile(path);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new FormatError(path, 'must hold a JSON object at the top level');
  }
  return value as Record<string, unknown>;
}
