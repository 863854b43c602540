/**
 * Reading a whole text or JSON file (config.json, an index, a corpus split) by path, on Node,
 * with errors that name the file and what is wrong with it. Not for files too large to hold in
 * memory. The parsing itself is readable-file.ts's, shared with the browser.
 */
import { readFileSync } from 'node:fs';
import type { z } from 'zod';
import { FormatError } from '../errors.ts';
import { jsonObject, parseJson } from './readable-file.ts';
import { parseWithSchema, type SchemaSource } from './schema.ts';

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
  return parseJson(readTextFile(path), path);
}

/** Like readJsonFile, but the top level must be a JSON object. */
export function readJsonObject(path: string): Record<string, unknown> {
  return jsonObject(readJsonFile(path), path);
}

/** Reads the JSON file at `path` and checks it against `schema` (format/schema.ts): errors name `path` and the field. */
export function readJsonWithSchema<S extends z.ZodType>(schema: S, path: string, source: Omit<SchemaSource, 'file'> = {}): z.output<S> {
  return parseWithSchema(schema, readJsonFile(path), { ...source, file: path });
}
