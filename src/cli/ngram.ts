/**
 * `ppd ngram build`: a static n-gram table from the model's own greedy generations (and, with
 * --text, the text's own n-grams), written where `generate --ppd` finds it (ADAPTER/ngram.bin).
 * `ppd ngram info`: what a table holds and what it was built for. docs/NGRAM.md is the guide.
 */
import { dirname, join, relative } from 'node:path';
import { statSync } from 'node:fs';
import { InputError } from '../errors.ts';
import { loadModel } from '../checkpoint/load.ts';
import { openModelDir } from '../checkpoint/model-dir.ts';
import { requireTokenizer } from '../checkpoint/loaded-model.ts';
import { cachedTokenStream, documentsOf } from '../data/tokenize.ts';
import type { QuantizeMode } from '../format/quantize.ts';
import { readTextFile } from '../format/text-file.ts';
import { loadAdapter, promptHeadOf } from '../ppd/adapter-files.ts';
import { bindingOf, countNgrams, NgramTable, type CountedSequence } from '../ppd/ngram-table.ts';
import { loadNgramTable, NGRAM_FILE, saveNgramTable } from '../ppd/ngram-files.ts';
import { Progress } from '../report/progress.ts';
import type { DraftTally } from '../ppd/draft.ts';
import type { PpdSetup } from '../ppd/setup.ts';
import { generateSequences, removePartial } from '../train/ngram-build.ts';

/** New tokens `ppd ngram build` generates unless told: about 2 minutes of a 7.85M-parameter model on 2 idle cores; docs/NGRAM.md. */
export const DEFAULT_NGRAM_GENERATE = 100_000;

export interface NgramBuildFlags {
  model: string;
  ppd?: string;
  data: string;
  out?: string;
  generate: number;
  length: number;
  promptTokens: number;
  seed: number;
  maxNgram: number;
  minCount: number;
  top: number;
  text?: boolean;
  threads?: number;
  quantize?: QuantizeMode;
}

const shown = (path: string) => {
  const rel = relative(process.cwd(), path);
  return rel.startsWith('..') ? path : rel;
};

export async function ngramBuildCommand(f: NgramBuildFlags): Promise<void> {
  const out = f.out ?? (f.ppd === undefined ? undefined : join(f.ppd, NGRAM_FILE));
  if (out === undefined) throw new InputError(`--out FILE is needed (or --ppd ADAPTER, to write ADAPTER/${NGRAM_FILE})`);
  const text = readTextFile(f.data);
  const documents = documentsOf(text);
  const started = performance.now();
  // With an adapter that has a prompt head, the model is opened for it (PpdDecoder requires it).
  const loaded = await loadModel(f.model, { threads: f.threads, quantize: f.quantize, needsTokenizer: true, promptHead: f.ppd === undefined ? undefined : promptHeadOf(f.ppd) });
  try {
    const tokenizer = requireTokenizer(loaded);
    const binding = bindingOf(loaded.config, tokenizer);
    const adapter = f.ppd === undefined ? undefined : loadAdapter(f.ppd, loaded.config);
    const plan = { generate: f.generate, length: f.length, promptTokens: f.promptTokens, seed: f.seed };
    const partialFile = `${out}.partial`;
    const files = openModelDir(f.model);
    const weights = files.tensors.stamp ?? files.tensors.origin;
    files.tensors.close();
    process.stderr.write(`n-gram table for ${shown(f.model)}: ${f.generate} greedy tokens from prompts cut from ${shown(f.data)} (${documents.length} documents)${adapter ? ', decoded with the context lookup' : ''}\n`);
    const bar = new Progress('generations', f.generate, 'tok');
    const run = await generateSequences(loaded, documents, plan, {
      binding,
      weights,
      text,
      partialFile,
      adapter,
      onProgress: (tokens) => bar.update(Math.min(tokens, f.generate)),
      onNotice: (line) => process.stderr.write(`${line}\n`),
    });
    bar.stop(`${run.sequences.length} generations, ${run.generatedTokens} tokens${run.resumedTokens > 0 ? ` (${run.resumedTokens} from ${shown(partialFile)})` : ''}`);
    const sequences: CountedSequence[] = [...run.sequences];
    let textTokens = 0;
    if (f.text) {
      const tokenBar = new Progress('tokenizing the text', documents.length, 'docs');
      const stream = cachedTokenStream(tokenizer, JSON.stringify(tokenizer.source.tokenizerJson), text, join(dirname(out), 'cache'), (done) => tokenBar.update(done));
      tokenBar.stop();
      sequences.push({ ids: stream, countFrom: 1 });
      textTokens = stream.length;
    }
    const counting = performance.now();
    const sections = countNgrams(sequences, { maxNgram: f.maxNgram, minCount: f.minCount, topK: f.top });
    const bytes = NgramTable.encode(sections, {
      binding,
      minCount: f.minCount,
      topK: f.top,
      source: {
        model: shown(f.model),
        data: shown(f.data),
        generations: run.sequences.length,
        generatedTokens: run.generatedTokens,
        length: f.length,
        promptTokens: f.promptTokens,
        seed: f.seed,
        textTokens,
        command: `ppd ${process.argv.slice(2).join(' ')}`,
      },
      created: new Date().toISOString(),
    });
    saveNgramTable(out, bytes);
    removePartial(partialFile);
    const contexts = sections.map((s) => `${s.n}: ${s.totals.length}`).join(', ');
    process.stderr.write(`counted in ${((performance.now() - counting) / 1000).toFixed(1)} s; contexts by length ${contexts}; ${(bytes.length / 1e6).toFixed(2)} MB; ${((performance.now() - started) / 1000).toFixed(0)} s in all\n`);
    process.stdout.write(`wrote ${shown(out)}\n`);
  } finally {
    await loaded.model.release();
  }
}

export function ngramInfoCommand(f: { table: string; json?: boolean }): void {
  const table = loadNgramTable(f.table);
  const h = table.header;
  if (f.json) {
    process.stdout.write(`${JSON.stringify({ ...h, fileBytes: statSync(f.table).size }, null, 2)}\n`);
    return;
  }
  const lines = [
    `${shown(f.table)}: ${h.schema}, ${(statSync(f.table).size / 1e6).toFixed(2)} MB, created ${h.created}`,
    `bound to: vocabulary of ${h.binding.vocabSize} tokens, tokenizer ${h.binding.tokenizer}, model config ${h.binding.configHash}`,
    `contexts of 1..${h.maxNgram} tokens seen at least ${h.minCount} times, up to ${h.topK} continuations each:`,
    ...h.sections.map((s) => `  n = ${s.n}: ${s.contexts} contexts, ${s.entries} continuations`),
    `source: ${JSON.stringify(h.source)}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

/** "n-gram table FILE (1.23 MB in memory)": what `generate`/`serve` tell about the table they decode with. */
export function describeTable(ngram: NonNullable<PpdSetup['ngram']>): string {
  return `n-gram table ${shown(ngram.file)} (${(ngram.table.bytes / 1e6).toFixed(2)} MB in memory, up to ${ngram.tokens} tokens per step)`;
}

/** After a `generate --ppd`: how the chains drafted beside the tree fared, per source. */
export function draftsLine(tally: DraftTally, ngram: PpdSetup['ngram']): string {
  const source = (name: string, t: DraftTally['lookup']) => `${name} ${t.accepted} of ${t.proposed} tokens accepted in ${t.steps} steps`;
  return `drafted beside the tree: ${source('context lookup', tally.lookup)}; ${ngram ? source(describeTable(ngram), tally.ngram) : 'no n-gram table'}`;
}
