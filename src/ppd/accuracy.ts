/**
 * The accuracy table of a prompt-token adapter (`accuracy.json`, schema `ppd.accuracy/1`): for
 * prompt token i and rank k, the share of held-out positions where the base model's true greedy
 * token at depth i+1 is exactly the adapter's k-th guess (PPD.md §4). Hardware independent; the
 * tree builder and the calibration read it. Not how it is measured (train/train-prompts.ts).
 */
import { writeJsonAtomic } from '../format/atomic.ts';
import { arrayOf, integer, literal, looseObject, number, text } from '../format/schema.ts';
import { readJsonWithSchema } from '../format/text-file.ts';

const ACCURACY_SCHEMA = 'ppd.accuracy/1';

/** acc[i][k], i < N prompt tokens, k < ranks: P(the true token at depth i+1 is exactly guess k). */
export type AccuracyTable = number[][];

const accuracyFile = looseObject({
  schema: literal(ACCURACY_SCHEMA).optional(),
  examples: integer(0).optional(),
  source: text('a string', true).optional(),
  top1StandardError: arrayOf(number(0), 'a list of numbers').optional(),
  accuracy: arrayOf(arrayOf(number(0), 'a list of shares by rank'), 'a non-empty table of numbers [prompt token][rank]')
    .min(1, { error: 'must be a non-empty table of numbers [prompt token][rank], got []' }),
});

/** The `accuracy` table of a `ppd.accuracy/1` file. */
export function readAccuracyTable(path: string): AccuracyTable {
  return readJsonWithSchema(accuracyFile, path).accuracy;
}

/**
 * Writes accuracy.json: the table, how many held-out examples (cut points) measured it, from
 * which data, and the standard error of each prompt token's top-1 share when known.
 */
export function writeAccuracyFile(path: string, accuracy: AccuracyTable, examples: number, source: string, top1StandardError?: number[]): void {
  writeJsonAtomic(path, { schema: ACCURACY_SCHEMA, examples, source, accuracy, ...(top1StandardError ? { top1StandardError } : {}) });
}
