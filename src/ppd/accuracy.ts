/**
 * The accuracy table of a prompt-token adapter (`accuracy.json`, schema `ppd.accuracy/1`): for
 * prompt token i and rank k, the share of held-out positions where the base model's true greedy
 * token at depth i+1 is exactly the adapter's k-th guess (PPD.md §4). Hardware independent; the
 * tree builder and the calibration read it. Not how it is measured (train/train-prompts.ts).
 * Reading it from a folder works on Node and in a browser alike; accuracy-files.ts reads and
 * writes paths on Node.
 */
import { arrayOf, integer, literal, looseObject, number, parseWithSchema, text } from '../format/schema.ts';
import { readFolderJson, type Folder } from '../format/readable-file.ts';

export const ACCURACY_SCHEMA = 'ppd.accuracy/1';

/** acc[i][k], i < N prompt tokens, k < ranks: P(the true token at depth i+1 is exactly guess k). */
export type AccuracyTable = number[][];

export const accuracyFileSchema = looseObject({
  schema: literal(ACCURACY_SCHEMA).optional(),
  examples: integer(0).optional(),
  source: text('a string', true).optional(),
  top1StandardError: arrayOf(number(0), 'a list of numbers').optional(),
  accuracy: arrayOf(arrayOf(number(0), 'a list of shares by rank'), 'a non-empty table of numbers [prompt token][rank]')
    .min(1, { error: 'must be a non-empty table of numbers [prompt token][rank], got []' }),
});

/** The `accuracy` table of the `ppd.accuracy/1` file `name` in `folder`. */
export function readAccuracyTableIn(folder: Folder, name: string): AccuracyTable {
  return parseWithSchema(accuracyFileSchema, readFolderJson(folder, name), { file: folder.nameOf(name) }).accuracy;
}
