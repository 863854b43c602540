/**
 * The golden continuation of the bundled model (test/golden/bundled-greedy.json): a fixed prompt
 * and the exact ids greedy decoding gives after it, as llama2.c's test pins its model's text.
 * Shared by the test (test/golden.test.ts) and the script that regenerates the file on purpose
 * when the bundled model changes (scripts/update-golden.ts). The file names the model's weights
 * by digest, so a retrained model fails the test with the command to run, not with a diff.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { arrayOf, integer, literal, number, object, text } from '../../src/format/schema.ts';
import { readJsonWithSchema } from '../../src/format/text-file.ts';

export const GOLDEN_FILE = join(import.meta.dirname, '..', 'golden', 'bundled-greedy.json');
export const REGENERATE = 'npx tsx scripts/update-golden.ts';

const goldenSchema = object({
  schema: literal('ppd.golden/1'),
  regenerate: text(),
  /** sha256 (16 hex digits) of the model's model.safetensors. */
  weightsDigest: text(),
  prompt: text(),
  maxTokens: integer(1),
  ids: arrayOf(integer(0), 'a list of token ids'),
  text: text('a string', true),
  /** Smallest gap between the top two logits along the continuation: how far it is from a tie. */
  minMargin: number(0),
});

export type Golden = ReturnType<typeof readGolden>;

export function readGolden(path = GOLDEN_FILE) {
  return readJsonWithSchema(goldenSchema, path);
}

export function weightsDigest(modelDir: string): string {
  return createHash('sha256').update(readFileSync(join(modelDir, 'model.safetensors'))).digest('hex').slice(0, 16);
}
