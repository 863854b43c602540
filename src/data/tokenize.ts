/**
 * Turning text into one token stream for training and evaluation: each document becomes
 * BOS + its tokens + EOS, so the model sees document starts and learns to end them. A corpus
 * split file (data/corpus) is cut at its separators; any other text is one document. Streams are
 * cached on disk keyed by the tokenizer and the text, because the JS tokenizer needs minutes for
 * a corpus.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../format/atomic.ts';
import { ModelError } from '../errors.ts';
import type { Tokenizer } from '../tokenizer/tokenizer.ts';
import { END_OF_TEXT, parseSplitFile } from './corpus.ts';

export function documentsOf(text: string): string[] {
  return text.includes(END_OF_TEXT) ? parseSplitFile(text) : [text];
}

export function tokenizeDocuments(
  tokenizer: Tokenizer,
  documents: readonly string[],
  onProgress?: (done: number, total: number) => void,
): Int32Array {
  if (tokenizer.bosId === null || tokenizer.eosId === null) {
    throw new ModelError('the tokenizer needs BOS and EOS tokens to delimit documents');
  }
  // Each document's ids are kept apart and copied once at the end: spreading a long document's
  // ids into one push (a 600 KB source file is ~150k tokens) overflows the call stack.
  const encoded: number[][] = [];
  let total = 0;
  documents.forEach((doc, i) => {
    const ids = tokenizer.encode(doc, { addBos: false });
    encoded.push(ids);
    total += ids.length + 2;
    onProgress?.(i + 1, documents.length);
  });
  const out = new Int32Array(total);
  let at = 0;
  for (const ids of encoded) {
    out[at++] = tokenizer.bosId;
    out.set(ids, at);
    at += ids.length;
    out[at++] = tokenizer.eosId;
  }
  return out;
}

/** The token stream of `text`, from `cacheDir` when this tokenizer already encoded this text. */
export function cachedTokenStream(
  tokenizer: Tokenizer,
  tokenizerKey: string,
  text: string,
  cacheDir: string,
  onProgress?: (done: number, total: number) => void,
): Int32Array {
  const key = createHash('sha256').update(tokenizerKey).update('\0').update(text).digest('hex').slice(0, 24);
  const path = join(cacheDir, `tokens-${key}.i32`);
  if (existsSync(path)) {
    const bytes = readFileSync(path);
    return new Int32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  }
  const ids = tokenizeDocuments(tokenizer, documentsOf(text), onProgress);
  mkdirSync(cacheDir, { recursive: true });
  writeFileAtomic(path, new Uint8Array(ids.buffer));
  return ids;
}
