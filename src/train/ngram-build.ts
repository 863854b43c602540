/**
 * Building a static n-gram table (ppd/ngram-table.ts) from a model's own greedy generations:
 * prompts cut from a text at random places, each continued greedily by the model, and the
 * (context, next token) pairs of the continuations counted. The model's habits are what its
 * verifier accepts, so its own text is the table's source; a text's own n-grams can be added.
 *
 * Resumable: every generation is appended to a partial file beside the output as it finishes
 * (prompt i depends only on the seed, the text and i; its continuation only on the model), so an
 * interrupted build goes on where it stopped, and a larger --generate extends a finished one's
 * generations. The partial file is removed once the table is written.
 *
 * Not here: the file format and lookup (ppd/ngram-table.ts), flags (cli/ngram.ts).
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, rmSync, truncateSync, writeSync } from 'node:fs';
import { FormatError, InputError } from '../errors.ts';
import { requireTokenizer, type LoadedModel } from '../checkpoint/loaded-model.ts';
import { autoregressive, type TokenStream } from '../decode/autoregressive.ts';
import { ppdDecode } from '../ppd/decode.ts';
import type { PromptAdapter } from '../ppd/adapter.ts';
import { DEFAULT_LOOKUP_TOKENS } from '../ppd/adapter-folder.ts';
import { rootOnlyTreeSet } from '../ppd/tree-builder.ts';
import type { CountedSequence, NgramBinding } from '../ppd/ngram-table.ts';
import { Rng } from '../sampling/rng.ts';
import { Sampler } from '../sampling/sampler.ts';

export interface GenerationPlan {
  /** New tokens to generate in all (the last generation may go past it). */
  generate: number;
  /** Most new tokens per generation (EOS and the context end stop one earlier). */
  length: number;
  /** Most prompt tokens per generation. */
  promptTokens: number;
  seed: number;
}

/** A prompt cut from the text: `index` numbers it in the seed's sequence of prompts. */
export interface CutPrompt {
  index: number;
  ids: number[];
}

const WORD_END = /\s/;
/** Characters of text tokenized per prompt token wanted (generous: the window is cut to the tokens). */
const CHARS_PER_TOKEN = 8;
/** A prompt shorter than this is drawn again (a cut right after a document's start). */
const MIN_PROMPT_TOKENS = 4;

/**
 * Prompt `index` of the sequence `seed` draws from `documents`: a place in the text chosen
 * uniformly by character, moved back to the end of a word, and up to `promptTokens` tokens of
 * whole words before it (BOS first when the window reaches the document's start, as the
 * tokenizer adds it to raw prompts).
 */
export function cutPrompt(loaded: LoadedModel, documents: readonly string[], index: number, o: Pick<GenerationPlan, 'promptTokens' | 'seed'>): CutPrompt {
  const tokenizer = requireTokenizer(loaded);
  const ends: number[] = [];
  let total = 0;
  for (const doc of documents) ends.push((total += doc.length));
  if (total === 0) throw new InputError('the text has no characters to cut prompts from');
  const rng = new Rng(o.seed * 1_000_003 + index);
  for (let attempt = 0; ; attempt++) {
    const at = Math.floor(rng.next() * total);
    let d = 0;
    while (ends[d]! <= at) d++;
    const doc = documents[d]!;
    let end = at - (ends[d]! - doc.length);
    while (end > 0 && !WORD_END.test(doc[end]!)) end--; // the cut ends a word
    let start = Math.max(0, end - o.promptTokens * CHARS_PER_TOKEN);
    while (start > 0 && start < end && !WORD_END.test(doc[start - 1]!)) start++; // and starts one
    const ids = tokenizer.encode(doc.slice(start, end).trimEnd(), start === 0 ? {} : { addBos: false });
    const kept = ids.slice(-o.promptTokens);
    if (kept.length >= MIN_PROMPT_TOKENS) return { index, ids: kept };
    if (attempt > 1000) throw new InputError(`no place in the text gives a prompt of ${MIN_PROMPT_TOKENS} tokens`);
  }
}

/** Up to `length` greedy tokens after `prompt`, ending early at EOS (included) or the context's end. */
async function continuation(loaded: LoadedModel, prompt: number[], length: number, adapter?: PromptAdapter): Promise<number[]> {
  const sampler = new Sampler({ temperature: 0 });
  // With an adapter, PPD with the context lookup alone (no prompt-token rows): the same greedy
  // ids as plain decoding, faster where the text repeats.
  const stream: TokenStream = adapter
    ? ppdDecode(loaded.model, prompt, { adapter, trees: rootOnlyTreeSet(adapter), lookup: DEFAULT_LOOKUP_TOKENS, sampler })
    : autoregressive(loaded.model, prompt, sampler);
  const room = Math.min(length, loaded.config.maxPositionEmbeddings - prompt.length);
  const out: number[] = [];
  const eos = new Set(loaded.eosIds);
  try {
    for await (const chunk of stream) {
      for (const id of chunk) {
        out.push(id);
        if (eos.has(id) || out.length >= room) return out;
      }
    }
  } finally {
    await stream.return();
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The partial file: a header line naming what it holds, then one record per generation:
// u32 prompt index, u32 prompt length P, u32 continuation length G, i32 [P + G] ids.

const PARTIAL_MAGIC = 'ppd.ngram-partial/1';

/**
 * What the generations depend on: the model (its binding and its weight files' stamp: another
 * training run of the same shape writes other text), the text and the plan. A partial file made
 * for anything else is started over.
 */
export function partialIdentity(binding: NgramBinding, weights: string, text: string, plan: GenerationPlan): string {
  const digest = (data: string) => createHash('sha256').update(data).digest('hex').slice(0, 16);
  return JSON.stringify({ schema: PARTIAL_MAGIC, binding, weights: digest(weights), textDigest: digest(text), length: plan.length, promptTokens: plan.promptTokens, seed: plan.seed });
}

interface Generated extends CountedSequence {
  index: number;
  ids: number[];
}

/**
 * The generations a partial file holds, when it was made for `identity`; a record cut short by
 * an interruption is dropped (and cut off the file). Returns the records and the file's good length.
 */
function readPartial(path: string, identity: string): { records: Generated[]; bytes: number } | undefined {
  if (!existsSync(path)) return undefined;
  const data = readFileSync(path);
  const newline = data.indexOf(10);
  if (newline < 0 || data.subarray(0, newline).toString('utf8') !== identity) return undefined;
  const records: Generated[] = [];
  let at = newline + 1;
  while (at + 12 <= data.length) {
    const [index, P, G] = [data.readUInt32LE(at), data.readUInt32LE(at + 4), data.readUInt32LE(at + 8)];
    const end = at + 12 + 4 * (P + G);
    if (end > data.length) break;
    const ids = Array.from({ length: P + G }, (_, i) => data.readInt32LE(at + 12 + 4 * i));
    if (index !== records.length) throw new FormatError(path, `record ${records.length} is for prompt ${index}; delete the file to start over`);
    records.push({ index, ids, countFrom: P });
    at = end;
  }
  return { records, bytes: at };
}

function appendRecord(fd: number, record: Generated): void {
  const bytes = Buffer.alloc(12 + 4 * record.ids.length);
  bytes.writeUInt32LE(record.index, 0);
  bytes.writeUInt32LE(record.countFrom, 4);
  bytes.writeUInt32LE(record.ids.length - record.countFrom, 8);
  record.ids.forEach((id, i) => bytes.writeInt32LE(id, 12 + 4 * i));
  writeSync(fd, bytes);
}

export interface GenerationRun {
  sequences: Generated[];
  /** Tokens generated in all, and by this run (the rest came from the partial file). */
  generatedTokens: number;
  resumedTokens: number;
}

/**
 * Greedy continuations of prompts cut from `documents` until `plan.generate` new tokens are made,
 * appended to `partialFile` as they finish (and read back from it when it was made for the same
 * model, text and plan). `onProgress(tokens)` after each.
 */
export async function generateSequences(
  loaded: LoadedModel,
  documents: readonly string[],
  plan: GenerationPlan,
  o: {
    binding: NgramBinding;
    /** The model's weight files' stamp (TensorSource.stamp). */
    weights: string;
    text: string;
    partialFile: string;
    adapter?: PromptAdapter;
    onProgress?: (tokens: number) => void;
    onNotice?: (line: string) => void;
  },
): Promise<GenerationRun> {
  for (const [name, value] of [['generate', plan.generate], ['length', plan.length], ['prompt tokens', plan.promptTokens]] as const) {
    if (!(Number.isInteger(value) && value >= 1)) throw new InputError(`${name} must be an integer >= 1, got ${value}`);
  }
  const identity = partialIdentity(o.binding, o.weights, o.text, plan);
  const previous = readPartial(o.partialFile, identity);
  if (previous === undefined && existsSync(o.partialFile)) o.onNotice?.(`${o.partialFile} was made for another model, text or plan: starting over`);
  const sequences = previous?.records ?? [];
  const generatedOf = (s: Generated) => s.ids.length - s.countFrom;
  let tokens = 0;
  let kept = 0;
  while (kept < sequences.length && tokens < plan.generate) tokens += generatedOf(sequences[kept++]!);
  sequences.length = kept;
  const resumedTokens = tokens;
  if (resumedTokens > 0) o.onNotice?.(`resuming from ${o.partialFile}: ${sequences.length} generations, ${resumedTokens} tokens`);
  if (previous === undefined) {
    const fd = openSync(o.partialFile, 'w');
    writeSync(fd, `${identity}\n`);
    closeSync(fd);
  } else truncateSync(o.partialFile, previous.bytes);
  o.onProgress?.(tokens);
  if (tokens < plan.generate) {
    const fd = openSync(o.partialFile, 'a');
    try {
      let synced = performance.now();
      while (tokens < plan.generate) {
        const prompt = cutPrompt(loaded, documents, sequences.length, plan);
        const generated = await continuation(loaded, prompt.ids, plan.length, o.adapter);
        const record: Generated = { index: prompt.index, ids: [...prompt.ids, ...generated], countFrom: prompt.ids.length };
        appendRecord(fd, record);
        if (performance.now() - synced > 2000) (fsyncSync(fd), (synced = performance.now()));
        sequences.push(record);
        tokens += generated.length;
        o.onProgress?.(tokens);
      }
    } finally {
      fsyncSync(fd);
      closeSync(fd);
    }
  }
  return { sequences, generatedTokens: tokens, resumedTokens };
}

/** Removes the partial file once the table it fed is written. */
export function removePartial(path: string): void {
  rmSync(path, { force: true });
}
