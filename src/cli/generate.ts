/**
 * `ppd generate`: streams a completion to stdout and ends with a stats line on stderr, or prints
 * one JSON object with --json.
 */
import { startGeneration } from '../generate/request.ts';
import type { GenerationStats } from '../generate/generate.ts';
import { loadModel } from '../checkpoint/load.ts';
import { loadPpdSetup, plainDecodingNote } from '../ppd/setup.ts';
import { promptHeadOf } from '../ppd/adapter-files.ts';
import { loadDraft } from '../spec/setup.ts';
import { InputError } from '../errors.ts';
import { checkPpdOnlyFlags, ppdFlags } from './options.ts';
import { draftsLine } from './ngram.ts';
import { addDraft, emptyDraftTally } from '../ppd/draft.ts';
import type { QuantizeMode } from '../format/quantize.ts';

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
  quantize?: QuantizeMode;
  ppd?: string;
  trees?: string;
  verification?: 'coupled' | 'typical' | 'rejection';
  lookup?: number;
  ngram?: string;
  ngramTokens?: number;
  draft?: string;
  draftPpd?: string;
  draftTokens: number;
}

export function statsLine(s: GenerationStats): string {
  return (
    `prompt ${s.promptTokens} tokens, generated ${s.newTokens} tokens in ${s.seconds.toFixed(2)} s ` +
    `(${s.tokensPerSecond.toFixed(1)} tokens/s, first token after ${s.prefillSeconds.toFixed(2)} s), ` +
    `${s.steps} steps, ${s.tau.toFixed(2)} tokens/step, ${s.decoder} decoding, stopped by ${s.finishReason}`
  );
}

export async function generateCommand(flags: GenerateFlags): Promise<void> {
  if (flags.draftPpd && !flags.draft) throw new InputError('--draft-ppd needs --draft (the draft model the adapter belongs to)');
  if (flags.ppd && flags.draft) throw new InputError('--ppd and --draft cannot be combined; use --draft-ppd to decode the draft with PPD');
  checkPpdOnlyFlags(flags);
  // --quantize applies to every model loaded here: the target and the draft.
  const runtime = { threads: flags.threads, quantize: flags.quantize };
  const loaded = await loadModel(flags.model, { ...runtime, needsTokenizer: true, promptHead: flags.ppd ? promptHeadOf(flags.ppd) : undefined });
  const ppd = flags.ppd ? loadPpdSetup(loaded.config, flags.ppd, { ...ppdFlags(flags), ...runtime, modelDir: flags.model, tokenizer: loaded.tokenizer }) : undefined;
  const plainNote = ppd && plainDecodingNote(ppd, flags.ppd!, flags);
  if (plainNote) process.stderr.write(`${plainNote}\n`);
  const draft = flags.draft ? await loadDraft(loaded, flags.draft, { ppd: flags.draftPpd, draftTokens: flags.draftTokens, ...runtime }) : undefined;
  const drafts = emptyDraftTally();
  const generation = startGeneration(loaded, {
    ppd,
    draft,
    onDraft: (outcome) => addDraft(drafts, outcome),
    prompt: flags.chat ? [{ role: 'user', content: flags.prompt }] : flags.prompt,
    maxTokens: flags.maxTokens,
    sampling: { temperature: flags.temperature, topP: flags.topP, topK: flags.topK, seed: flags.seed },
    stop: flags.stop,
  });
  if (flags.json) {
    const { text, ids, stats } = await generation.complete();
    // drafts: the chains verified beside the tree, per source (with --ppd), and the table's file and bytes in memory.
    const drafted = ppd ? { drafts: { ...drafts, ngramTable: ppd.ngram ? { file: ppd.ngram.file, bytes: ppd.ngram.table.bytes } : null } } : {};
    process.stdout.write(JSON.stringify({ text, ids, stats, ...drafted }) + '\n');
  } else {
    for await (const piece of generation) process.stdout.write(piece.text);
    process.stdout.write('\n');
    process.stderr.write(statsLine(generation.result.stats) + '\n');
    if (ppd && (ppd.lookup || ppd.ngram)) process.stderr.write(draftsLine(drafts, ppd.ngram) + '\n');
  }
  await loaded.model.release();
  await draft?.model.release();
}
