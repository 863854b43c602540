/**
 * `ppd demo` (what `npm start` runs): the product on the bundled model. It continues a held-out
 * prompt with plain greedy decoding, then with Parallel Prompt Decoding's prompt tokens alone,
 * then as `generate --ppd` decodes on this machine (its calibrated trees plus the context-lookup
 * chain), and reports the speeds, the tokens accepted per step and whether the texts are
 * identical (they must be). Tokens accepted in one step are shown as one coloured run.
 *
 * Without the bundled model (a checkout that lacks models/), it says so and generates from a
 * small random-weight model instead, so every stage still runs.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startGeneration, type TextRequest } from '../generate/request.ts';
import type { GenerationResult } from '../generate/generate.ts';
import { spread } from '../report/timing.ts';
import { loadModel, type LoadedModel } from '../checkpoint/load.ts';
import { writeRandomModel } from '../checkpoint/random-init.ts';
import { loadGuessingPpdSetup, loadPpdSetup, type PpdSetup } from '../ppd/setup.ts';
import { promptHeadOf } from '../ppd/adapter-files.ts';
import { defaultCacheDir } from '../runtime/compile.ts';
import { byteFallbackTokenizerConfig, byteFallbackTokenizerJson } from '../tokenizer/byte-tokenizer.ts';
import { statsLine } from './generate.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const DEFAULT_MODEL = join(ROOT, 'models', 'ppd-base');
export const DEFAULT_ADAPTER = join(DEFAULT_MODEL, 'ppd');
/** The opening of a held-out document (data/code-corpus/test.txt), from a package training never saw. */
const PROMPT = "// npm-registry-fetch/lib/index.js\n'use strict'\n\nconst { HttpErrorAuthOTP } = require('./errors.js')\nconst checkResponse = require('./check-response.js')\n";

const RANDOM_SHAPE = {
  model_type: 'llama',
  vocab_size: 260,
  hidden_size: 256,
  intermediate_size: 688,
  num_hidden_layers: 4,
  num_attention_heads: 8,
  num_key_value_heads: 2,
  max_position_embeddings: 1024,
  rms_norm_eps: 1e-5,
  bos_token_id: 1,
  eos_token_id: 2,
};

function randomModelDir(): string {
  const dir = join(defaultCacheDir(), '..', 'demo-random-model');
  if (!existsSync(join(dir, 'model.safetensors'))) {
    writeRandomModel(dir, RANDOM_SHAPE, { seed: 7, tokenizerJson: byteFallbackTokenizerJson() });
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(byteFallbackTokenizerConfig()));
  }
  return dir;
}

const TIMED_ROUNDS = 5;

/** Streams a generation to stdout; with `colour`, each step's tokens alternate colours. */
async function show(loaded: LoadedModel, request: TextRequest, colour: boolean): Promise<GenerationResult> {
  const generation = startGeneration(loaded, request);
  const tty = process.stdout.isTTY && colour;
  let step = 0;
  process.stdout.write(typeof request.prompt === 'string' ? request.prompt : '');
  for await (const piece of generation) {
    if (!tty || piece.text === '') process.stdout.write(piece.text);
    else process.stdout.write(`\x1b[${step++ % 2 ? 36 : 33}m${piece.text}\x1b[0m`);
  }
  process.stdout.write('\n');
  return generation.result;
}

export async function demoCommand(flags: { maxTokens: number }): Promise<void> {
  if (!existsSync(join(DEFAULT_MODEL, 'model.safetensors'))) {
    process.stderr.write('The bundled model is missing (models/ppd-base): generating from a small random-weight model instead.\n\n');
    const loaded = await loadModel(randomModelDir());
    const result = await show(loaded, { prompt: 'Once upon a time', maxTokens: flags.maxTokens }, false);
    process.stderr.write(`\n${statsLine(result.stats)}\n`);
    await loaded.model.release();
    return;
  }
  const loaded = await loadModel(DEFAULT_MODEL, { promptHead: promptHeadOf(DEFAULT_ADAPTER) });
  // Prompt tokens alone: the machine's calibrated trees, or trees.json where it chose plain.
  const { setup: guessing, plainChosen } = loadGuessingPpdSetup(loaded.config, DEFAULT_ADAPTER, { lookup: 0, ngram: 'off' });
  // What `generate --ppd` does here: the machine's trees (budget 1 if it chose plain) + lookup.
  const product = loadPpdSetup(loaded.config, DEFAULT_ADAPTER, { onNotice: () => {} });
  const request: TextRequest = { prompt: PROMPT, maxTokens: flags.maxTokens };
  await startGeneration(loaded, { ...request, maxTokens: 4 }).complete(); // warm-up

  process.stderr.write('── plain greedy decoding (one token per forward) ──\n');
  const plain = await show(loaded, request, false);
  process.stderr.write(`${statsLine(plain.stats)}\n\n`);
  const runs: { label: string; result: GenerationResult; ppd: PpdSetup }[] = [];
  const run = async (label: string, heading: string, ppd: PpdSetup) => {
    process.stderr.write(`── ${heading} (each colour run = tokens accepted in one forward) ──\n`);
    const result = await show(loaded, { ...request, ppd }, true);
    process.stderr.write(`${statsLine(result.stats)}\n\n`);
    runs.push({ label, result, ppd });
  };
  const shown = (file = '') => relative(process.cwd(), file) || file;
  await run(
    'PPD, prompt tokens alone',
    `Parallel Prompt Decoding, prompt tokens alone (${shown(guessing.treesFile)}${plainChosen ? ': this machine\'s calibration chose no prompt-token rows over these trees' : ''})`,
    guessing,
  );
  const trees = product.trees.budget > 1 ? `the trees of ${shown(product.treesFile)}` : 'no prompt-token rows, as calibrated here';
  await run('generate --ppd', `generate --ppd as it decodes here: ${trees} + context lookup (up to ${product.lookup} tokens copied from earlier text)`, product);

  // One streamed run of a fraction of a second is at the mercy of the machine's noise: the speeds
  // compared are medians of TIMED_ROUNDS more runs of each decoder, taken in turn.
  const decoders = [undefined, ...runs.map((r) => r.ppd)];
  const rates: number[][] = decoders.map(() => []);
  for (let round = 0; round < TIMED_ROUNDS; round++) {
    for (const [d, ppd] of decoders.entries()) rates[d]!.push((await startGeneration(loaded, { ...request, ppd }).complete()).stats.tokensPerSecond);
  }
  const [plainRate, ...ppdRates] = rates.map((r) => spread(r).medianMs) as [number, ...number[]]; // spread() takes any unit
  process.stderr.write(`Speeds: median tokens/s of ${TIMED_ROUNDS} more runs of each, taken in turn.\n`);
  const { parameters, share } = guessing.adapter.parameterShare(loaded.config);
  let allIdentical = true;
  for (const [i, { label, result }] of runs.entries()) {
    const identical = result.ids.length === plain.ids.length && result.ids.every((id, k) => id === plain.ids[k]);
    allIdentical &&= identical;
    process.stderr.write(
      `${label}: ${(ppdRates[i]! / plainRate).toFixed(2)}x the speed of plain decoding ` +
        `(${ppdRates[i]!.toFixed(1)} vs ${plainRate.toFixed(1)} tokens/s), ` +
        `${result.stats.tau.toFixed(2)} tokens per forward, output ${identical ? 'identical to' : 'DIFFERENT FROM'} plain decoding.\n`,
    );
  }
  process.stderr.write(`The adapter: ${parameters} trained parameters (${(share * 100).toPrecision(2)} % of the model).\n`);
  await loaded.model.release();
  if (!allIdentical) process.exitCode = 1;
}
