/** accuracy.json (accuracy.ts) by path, on Node: read for the tree builder and calibration, written by training. */
import { writeJsonAtomic } from '../format/atomic.ts';
import { readJsonWithSchema } from '../format/text-file.ts';
import { ACCURACY_SCHEMA, accuracyFileSchema, type AccuracyTable } from './accuracy.ts';

/** The `accuracy` table of a `ppd.accuracy/1` file. */
export function readAccuracyTable(path: string): AccuracyTable {
  return readJsonWithSchema(accuracyFileSchema, path).accuracy;
}

/**
 * Writes accuracy.json: the table, how many held-out examples (cut points) measured it, from
 * which data, and the standard error of each prompt token's top-1 share when known.
 */
export function writeAccuracyFile(path: string, accuracy: AccuracyTable, examples: number, source: string, top1StandardError?: number[]): void {
  writeJsonAtomic(path, { schema: ACCURACY_SCHEMA, examples, source, accuracy, ...(top1StandardError ? { top1StandardError } : {}) });
}
