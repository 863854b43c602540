/**
 * Turning text into one token stream for training and evaluation: each document becomes
 * BOS + its tokens + EOS, so the model sees document starts and learns to end them. Text files
 * (`--train`, `--valid`, `--data`, `--file`, `--prompts`) divide into documents by one rule,
 * documentsOf: a file with END_OF_TEXT in it is a split file, cut at each one (corpus.ts: the
 * corpora put it on a line of its own between blank lines; a line of its own or inline works
 * too); any other text is ONE document, which the commands say in a note (noteTextFile).
 * README.md, "Text files", says the same for users. Streams are cached on disk keyed by the
 * tokenizer and the text, because the JS tokenizer needs minutes for a corpus.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../format/atomic.ts';
import { ModelError } from '../errors.ts';
import type { Tokenizer } from '../tokenizer/tokenizer.ts';
import { DOCUMENT_SEPARATOR, END_OF_TEXT, parseSplitFile } from './corpus.ts';

/** Whether `text` is a split file (documents separated by END_OF_TEXT) rather than one document. */
export const isSplitText = (text: string) => text.includes(END_OF_TEXT);

/** The documents of a text file's contents: a split file's, else the whole text as one. */
export function documentsOf(text: string): string[] {
  return isSplitText(text) ? parseSplitFile(text) : [text];
}

/** Tells (one line, stderr by default) that a file without END_OF_TEXT is read as one document; silent for a split file. */
export function noteTextFile(file: string, text: string, tell: (line: string) => void = (line) => process.stderr.write(`${line}\n`)): void {
  if (isSplitText(text)) return;
  tell(`note: ${file} has no ${END_OF_TEXT} separator, so it is read as one document (separate documents with a line holding only ${END_OF_TEXT}; README.md, "Text files")`);
}

/**
 * Where prompts are cut from (openings of at least some tokens): a split file's documents; in
 * plain text, which is one document, its paragraphs (blocks between blank lines), since one
 * opening cannot make several prompts.
 */
export function promptSourcesOf(text: string): string[] {
  if (isSplitText(text)) return parseSplitFile(text);
  return text.split(/\r?\n(?:[ \t]*\r?\n)+/).filter((paragraph) => paragraph.trim() !== '');
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
  // Keyed by the documents the text divides into, not by its bytes: a stream cached when the
  // separator rule was stricter (a lone-line separator used to stay inside one document) must
  // not answer for the same file now. A split file written as the corpora are (formatSplitFile)
  // keys exactly as its text did, so their existing caches stay valid.
  const documents = documentsOf(text);
  const keyText = isSplitText(text) ? documents.join(DOCUMENT_SEPARATOR) + '\n' : text;
  const key = createHash('sha256').update(tokenizerKey).update('\0').update(keyText).digest('hex').slice(0, 24);
  const path = join(cacheDir, `tokens-${key}.i32`);
  if (existsSync(path)) {
    const bytes = readFileSync(path);
    return new Int32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  }
  const ids = tokenizeDocuments(tokenizer, documents, onProgress);
  mkdirSync(cacheDir, { recursive: true });
  writeFileAtomic(path, new Uint8Array(ids.buffer));
  return ids;
}
