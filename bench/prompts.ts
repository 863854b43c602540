/**
 * Benchmark prompts: the openings of held-out documents, evenly spaced over the split (its
 * documents come grouped by source, so the first few are all of one kind), each cut at a
 * sentence (else word) end to PROMPT_TOKENS.min..max tokens, skipping on to the next document
 * where one ends before that (a whole document invites EOS). A plain-text file (no <|endoftext|>
 * separators) offers its paragraphs instead (src/data/tokenize.ts, promptSourcesOf). The split
 * is the test split of the corpus in this repository that the model's tokenizer was made for
 * (heldOutTextFor). Shared by the benchmarks, so their figures are measured on the same prompts.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { bundledHeldOutFor } from '../src/data/bundled-corpora.ts';
import { promptSourcesOf } from '../src/data/tokenize.ts';
import { FormatError } from '../src/errors.ts';
import { promptIds } from '../src/generate/request.ts';
import type { LoadedModel } from '../src/checkpoint/load.ts';
import { REPO_ROOT, repoPath } from './harness.ts';

/** The held-out text for a model that reads none of the corpora here (random-weight shapes): any text does for them. */
const FALLBACK_TEXT = join(REPO_ROOT, 'data', 'corpus', 'test.txt');

/**
 * The held-out text a benchmark cuts prompts from (or scores) for `loaded`: the test split of the
 * corpus made for its tokenizer (src/data/bundled-corpora.ts), so a retrained bundled model is
 * measured on its own kind of text; for any other model data/corpus's, with a note saying so.
 */
export function heldOutTextFor(loaded: LoadedModel): string {
  const file = loaded.tokenizer === undefined ? undefined : bundledHeldOutFor(loaded.tokenizer);
  if (file !== undefined) return file;
  process.stderr.write(`note: ${repoPath(loaded.dir)} reads none of this repository's corpora with their tokenizer; its prompts come from ${repoPath(FALLBACK_TEXT)}\n`);
  return FALLBACK_TEXT;
}
export const PROMPT_TOKENS = { min: 32, max: 64 };

export interface Prompt {
  /** 1-based. */
  number: number;
  document: number;
  text: string;
  /** Token ids as generation will see them (BOS included). */
  tokens: number;
}

/** `count` document indices spread evenly over `total` documents, the first included. */
function evenlySpaced(count: number, total: number): number[] {
  return Array.from({ length: Math.min(count, total) }, (_, i) => Math.floor((i * total) / Math.min(count, total)));
}

/**
 * The opening of `doc` with PROMPT_TOKENS.min..max tokens that the document goes on after: the
 * longest run of whole sentences (or lines), else of whole words; null when the document is too
 * short (a whole document as the prompt would invite EOS, not a continuation).
 */
function openingOf(loaded: LoadedModel, doc: string): { text: string; tokens: number } | null {
  let words: { text: string; tokens: number } | null = null;
  let sentences: { text: string; tokens: number } | null = null;
  const length = doc.trimEnd().length;
  for (const match of doc.matchAll(/\S+(\s*)/g)) {
    const end = match.index + match[0].length;
    const text = doc.slice(0, end).trimEnd();
    if (text.length === length) break;
    const tokens = promptIds(loaded, text).length;
    if (tokens > PROMPT_TOKENS.max) break;
    if (tokens < PROMPT_TOKENS.min) continue;
    words = { text, tokens };
    if (/[.!?;:]["')]?$/.test(text) || match[1]!.includes('\n')) sentences = { text, tokens };
  }
  return sentences ?? words;
}

/**
 * `count` prompts from documents spread evenly over a text file (heldOutTextFor's, or the user's),
 * each moved on to the next long-enough document when needed.
 */
export function selectPrompts(loaded: LoadedModel, count: number, file: string): Prompt[] {
  if (!existsSync(file)) throw new FormatError(file, 'not found');
  const docs = promptSourcesOf(readFileSync(file, 'utf8'));
  const prompts: Prompt[] = [];
  let next = 0;
  for (const start of evenlySpaced(count, docs.length)) {
    for (let document = Math.max(start, next); document < docs.length; document++) {
      const opening = openingOf(loaded, docs[document]!);
      if (opening === null) continue;
      prompts.push({ number: prompts.length + 1, document, ...opening });
      next = document + 1;
      break;
    }
  }
  if (prompts.length < count) {
    throw new FormatError(file, `only ${prompts.length} documents go on past a ${PROMPT_TOKENS.min}-token opening; ${count} prompts were asked for`);
  }
  return prompts;
}
