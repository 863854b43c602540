/**
 * Benchmark prompts: the openings of held-out documents (data/corpus/test.txt unless told), evenly spaced
 * over the split (its documents come grouped by source, so the first few are all Bible
 * chapters), each cut at a sentence (else word) end to PROMPT_TOKENS.min..max tokens, skipping on
 * to the next document where one ends before that (a whole document invites EOS). Shared by
 * bench:ppd and bench:spec, so their figures are measured on the same prompts.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { documentsOf } from '../src/data/tokenize.ts';
import { FormatError } from '../src/errors.ts';
import { promptIds } from '../src/generate/request.ts';
import type { LoadedModel } from '../src/checkpoint/load.ts';
import { REPO_ROOT } from './harness.ts';

export const CORPUS_FILE = join(REPO_ROOT, 'data', 'corpus', 'test.txt');
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
 * `count` prompts from documents spread evenly over a split file (default: the bundled corpus's
 * test split), each moved on to the next long-enough document when needed.
 */
export function selectPrompts(loaded: LoadedModel, count: number, file = CORPUS_FILE): Prompt[] {
  if (!existsSync(file)) throw new FormatError(file, file === CORPUS_FILE ? 'not found (it is committed; restore it with git)' : 'not found');
  const docs = documentsOf(readFileSync(file, 'utf8'));
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
