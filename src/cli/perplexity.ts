/**
 * `ppd perplexity`: held-out perplexity of any model on a text file, with a sliding window for
 * texts longer than the window. The text's documents (a split file's, else the whole text as one:
 * data/tokenize.ts) are scored each as BOS + text + EOS, like training saw them.
 */
import { documentsOf, noteTextFile, tokenizeDocuments } from '../data/tokenize.ts';
import { perplexity } from '../eval/perplexity.ts';
import { requireTokenizer, loadModel } from '../checkpoint/load.ts';
import { Progress } from '../report/progress.ts';
import { InputError } from '../errors.ts';
import { readTextFile } from '../format/text-file.ts';
import type { QuantizeMode } from '../format/quantize.ts';

export interface PerplexityFlags {
  model: string;
  file: string;
  window?: number;
  stride?: number;
  maxTokens?: number;
  json?: boolean;
  threads?: number;
  quantize?: QuantizeMode;
}

export async function perplexityCommand(flags: PerplexityFlags): Promise<void> {
  const text = readTextFile(flags.file);
  noteTextFile(flags.file, text);
  const loaded = await loadModel(flags.model, { threads: flags.threads, quantize: flags.quantize, needsTokenizer: true });
  const all = tokenizeDocuments(requireTokenizer(loaded), documentsOf(text));
  const ids = Array.from(flags.maxTokens ? all.subarray(0, flags.maxTokens) : all);
  if (ids.length < 2) throw new InputError(`${flags.file}: too little text to score`);
  const window = flags.window ?? Math.min(512, loaded.config.maxPositionEmbeddings);
  const stride = flags.stride ?? Math.max(1, Math.floor(window / 2));
  const bar = flags.json ? undefined : new Progress('perplexity', ids.length - 1, 'tokens');
  const result = await perplexity(loaded.model, ids, { window, stride, onProgress: (done) => bar?.update(done) });
  bar?.stop();
  await loaded.model.release();
  if (flags.json) {
    process.stdout.write(JSON.stringify({ model: flags.model, file: flags.file, window, stride, ...result }) + '\n');
  } else {
    process.stdout.write(`perplexity ${result.perplexity.toFixed(3)} (${result.nll.toFixed(4)} nats/token) over ${result.tokens} tokens, window ${window}, stride ${stride}\n`);
  }
}
