/**
 * Trains a LLaMA-style BPE tokenizer on a text file and writes tokenizer.json and
 * tokenizer_config.json into a folder (see src/tokenizer/train-bpe.ts).
 *
 *   npx tsx scripts/train-tokenizer.ts corpus.txt --out DIR [--vocab-size 8000] [--min-frequency 2]
 *
 * Prints the training time and the compression (characters per token) on the first
 * SAMPLE_CHARS of the training text: @huggingface/tokenizers encodes only ~0.3 MB/s.
 * Each file appears atomically (format/atomic.ts).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { integer } from '../src/cli/options.ts';
import { END_OF_TEXT, parseSplitFile } from '../src/data/corpus.ts';
import { exitOnPpdError } from '../src/errors.ts';
import { readTextFile } from '../src/format/text-file.ts';
import { writeJsonAtomic } from '../src/format/atomic.ts';
import { Tokenizer } from '../src/tokenizer/tokenizer.ts';
import { type TrainBpeProgress, trainBpe } from '../src/tokenizer/train-bpe.ts';

const SAMPLE_CHARS = 1_000_000;
/** The sample is encoded in chunks of about this many characters, cut after a newline. */
const CHUNK_CHARS = 4096;

interface Flags {
  out: string;
  vocabSize: number;
  minFrequency: number;
}


/** `text` cut after newlines into pieces of about CHUNK_CHARS (the library is slower on long strings). */
function* chunks(text: string): Generator<string> {
  for (let start = 0; start < text.length; ) {
    const newline = text.indexOf('\n', start + CHUNK_CHARS);
    const end = newline < 0 ? text.length : newline + 1;
    yield text.slice(start, end);
    start = end;
  }
}

function showProgress({ phase, done, total }: TrainBpeProgress): void {
  const line = total === null ? `${phase}: ${done} characters` : `${phase}: ${done}/${total}`;
  process.stderr.write(`\r${line}`);
}

function main(file: string, flags: Flags): void {
  const text = readTextFile(file);
  const t0 = performance.now();
  // A corpus split file (data/corpus) is trained on its documents, never on the separator.
  const texts = text.includes(END_OF_TEXT) ? parseSplitFile(text) : text;
  const { tokenizerJson, tokenizerConfig } = trainBpe(texts, {
    vocabSize: flags.vocabSize,
    minFrequency: flags.minFrequency,
    onProgress: process.stderr.isTTY ? showProgress : undefined,
  });
  const trainSeconds = (performance.now() - t0) / 1000;
  if (process.stderr.isTTY) process.stderr.write('\n');

  mkdirSync(flags.out, { recursive: true });
  writeJsonAtomic(join(flags.out, 'tokenizer.json'), tokenizerJson);
  writeJsonAtomic(join(flags.out, 'tokenizer_config.json'), tokenizerConfig);

  const tokenizer = Tokenizer.fromJson(tokenizerJson, tokenizerConfig);
  const t1 = performance.now();
  const sample = text.slice(0, SAMPLE_CHARS);
  let tokens = 0;
  for (const chunk of chunks(sample)) tokens += tokenizer.encode(chunk, { addBos: false }).length;
  const encodeSeconds = (performance.now() - t1) / 1000;
  process.stdout.write(
    `trained ${tokenizer.vocabSize} tokens on ${text.length} characters in ${trainSeconds.toFixed(1)} s; ` +
      `${(sample.length / Math.max(1, tokens)).toFixed(2)} characters/token on its first ${sample.length} ` +
      `(encoded in ${encodeSeconds.toFixed(1)} s); wrote ${flags.out}\n`,
  );
}

new Command('train-tokenizer')
  .description('train a LLaMA-style BPE tokenizer on a text file')
  .argument('<file>', 'UTF-8 text to train on')
  .requiredOption('--out <dir>', 'folder for tokenizer.json and tokenizer_config.json')
  .option('--vocab-size <n>', 'vocabulary size, special and byte tokens included', integer(260, 2 ** 24), 8000)
  .option('--min-frequency <n>', 'least count of a pair worth merging', integer(1), 2)
  .configureOutput({ outputError: (text, write) => write(text.split('\n')[0] + '\n') })
  .action((file: string, flags: Flags) => {
    try {
      main(file, flags);
    } catch (err) {
      exitOnPpdError(err);
    }
  })
  .parse();
