/**
 * `ppd init --random`: writes a random-weight model of any shape in Hugging Face layout, so
 * benchmarks at realistic sizes need no download. Models whose vocabulary can hold it get the
 * byte-level tokenizer, so they can generate (gibberish) text end to end.
 */
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { readJsonObject } from '../format/text-file.ts';
import type { FloatDType } from '../format/tensor-source.ts';
import { parameterCount } from '../model/config.ts';
import { writeRandomModel } from '../checkpoint/random-init.ts';
import { BYTE_TOKENIZER_VOCAB_SIZE, byteFallbackTokenizerConfig, byteFallbackTokenizerJson } from '../tokenizer/byte-tokenizer.ts';
import { InputError } from '../errors.ts';

export interface InitFlags {
  random?: boolean;
  config: string;
  out: string;
  seed: number;
  dtype: 'f32' | 'f16' | 'bf16';
}

export function initCommand(flags: InitFlags): void {
  if (!flags.random) throw new InputError('ppd init only makes random-weight models for now: pass --random');
  const shape = readJsonObject(flags.config);
  const withTokenizer = typeof shape.vocab_size === 'number' && shape.vocab_size >= BYTE_TOKENIZER_VOCAB_SIZE;
  const config = writeRandomModel(flags.out, shape, {
    seed: flags.seed,
    dtype: flags.dtype.toUpperCase() as FloatDType,
    tokenizerJson: withTokenizer ? byteFallbackTokenizerJson() : undefined,
  });
  if (withTokenizer) {
    writeFileSync(join(flags.out, 'tokenizer_config.json'), JSON.stringify(byteFallbackTokenizerConfig(), null, 2) + '\n');
  }
  process.stderr.write(
    `wrote ${flags.out}: ${(parameterCount(config) / 1e6).toFixed(2)}M random parameters (${flags.dtype}, seed ${flags.seed})` +
      `${withTokenizer ? ', byte-level tokenizer' : ', no tokenizer (vocab_size < ' + BYTE_TOKENIZER_VOCAB_SIZE + ')'}\n`,
  );
}
