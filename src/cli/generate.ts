/**
 * `ppd generate`: streams a completion to stdout and ends with a stats line on stderr, or prints
 * one JSON object with --json.
 */
import { startGeneration } from '../generate/request.ts';
import type { GenerationStats } from '../generate/generate.ts';
import { loadModel } from '../load.ts';
import { loadPpdSetup } from '../ppd/setup.ts';

export interface GenerateFlags {
  model: string;
  prompt: string;
  maxTokens: number;
  temperature: number;
  topP: number;
  topK: number;
  seed: number;
  stop?: string[];
  chat?: boolean;
  json?: boolean;
  threads?: number;
  ppd?: string;
  trees?: string;
  verification?: 'typical' | 'rejection';
}

export function statsLine(s: GenerationStats): string {
  return (
    `prompt ${s.promptTokens} tokens, generated ${s.newTokens} tokens in ${s.seconds.toFixed(2)} s ` +
    `(${s.tokensPerSecond.toFixed(1)} tokens/s, first token after ${s.prefillSeconds.toFixed(2)} s), ` +
    `${s.steps} steps, ${s.tau.toFixed(2)} tokens/step, stopped by ${s.finishReason}`
  );
}

export async function generateCommand(flags: GenerateFlags): Promise<void> {
  const loaded = await loadModel(flags.model, { threads: flags.threads, needsTokenizer: true });
  const ppd = flags.ppd ? loadPpdSetup(loaded.config, flags.ppd, { trees: flags.trees, verification: flags.verification }) : undefined;
  const generation = startGeneration(loaded, {
    ppd,
    prompt: flags.chat ? [{ role: 'user', content: flags.prompt }] : flags.prompt,
    maxTokens: flags.maxTokens,
    sampling: { temperature: flags.temperature, topP: flags.topP, topK: flags.topK, seed: flags.seed },
    stop: flags.stop,
  });
  if (flags.json) {
    const { text, ids, stats } = await generation.complete();
    process.stdout.write(JSON.stringify({ text, ids, stats }) + '\n');
  } else {
    for await (const piece of generation) process.stdout.write(piece.text);
    process.stdout.write('\n');
    process.stderr.write(statsLine(generation.result.stats) + '\n');
  }
  await loaded.model.release();
}
