/**
 * `ppd demo` (what `npm start` runs): the main job on the bundled model.
 *
 * ppd does not bundle a trained model yet, so the demo makes a small random-weight model on the
 * fly (cached between runs), says so plainly, and generates from it: the text is gibberish, but
 * every stage (loading, graph compilation, tokeniser, KV-cached decoding, streaming) runs for
 * real.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { startGeneration } from '../generate/request.ts';
import { loadModel } from '../load.ts';
import { writeRandomModel } from '../model/random-init.ts';
import { defaultCacheDir } from '../runtime/compile.ts';
import { byteFallbackTokenizerConfig, byteFallbackTokenizerJson } from '../tokenizer/byte-tokenizer.ts';
import { statsLine } from './generate.ts';
import { writeFileSync } from 'node:fs';

const DEMO_SHAPE = {
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

function demoModelDir(): string {
  const dir = join(defaultCacheDir(), '..', 'demo-random-model');
  if (!existsSync(join(dir, 'model.safetensors'))) {
    writeRandomModel(dir, DEMO_SHAPE, { seed: 7, tokenizerJson: byteFallbackTokenizerJson() });
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(byteFallbackTokenizerConfig()));
  }
  return dir;
}

export async function demoCommand(flags: { maxTokens: number }): Promise<void> {
  process.stderr.write(
    'ppd has no bundled trained model yet: generating from a small random-weight model made on the fly.\n' +
      'The text is gibberish by design; loading, compilation, tokenisation and KV-cached decoding are real.\n\n',
  );
  const dir = demoModelDir();
  const loaded = await loadModel(dir);
  const prompt = 'Once upon a time';
  const generation = startGeneration(loaded, { prompt, maxTokens: flags.maxTokens });
  process.stdout.write(prompt);
  for await (const piece of generation) process.stdout.write(JSON.stringify(piece.text).slice(1, -1));
  process.stdout.write('\n');
  process.stderr.write(`\n${statsLine(generation.result.stats)}\nmodel: ${dir}\n`);
  await loaded.model.release();
}
