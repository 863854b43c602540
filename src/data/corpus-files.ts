/**
 * Writing a corpus's split files: train.txt, valid.txt and test.txt in the split file format
 * (corpus.ts), each atomically, and the counts and checksums a manifest records for them. Shared
 * by the corpus builders (scripts/build-corpus.ts, scripts/build-code-corpus.ts).
 */
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../format/atomic.ts';
import { SPLITS, formatSplitFile, type CorpusDocument, type Split } from './corpus.ts';

export interface Counts {
  documents: number;
  /** Unicode code points of the documents' texts, separators not included. */
  chars: number;
  /** UTF-8 bytes of the documents' texts, separators not included. */
  bytes: number;
}

export function countDocuments(docs: readonly CorpusDocument[]): Counts {
  let chars = 0;
  let bytes = 0;
  for (const doc of docs) {
    for (const _ of doc.text) chars++;
    bytes += Buffer.byteLength(doc.text, 'utf8');
  }
  return { documents: docs.length, chars, bytes };
}

/** What a manifest says of one split file. */
export interface SplitFileEntry extends Counts {
  file: string;
  /** The file's size, separators included. */
  fileBytes: number;
  sha256: string;
  /** The held-out files' document ids, in file order (train's are too many to list). */
  ids?: string[];
}

/** Writes `<outDir>/<split>.txt` for each split and returns their manifest entries. */
export function writeSplitFiles(outDir: string, bySplit: Record<Split, CorpusDocument[]>): Record<Split, SplitFileEntry> {
  mkdirSync(outDir, { recursive: true });
  const files = {} as Record<Split, SplitFileEntry>;
  for (const split of SPLITS) {
    const text = formatSplitFile(bySplit[split]);
    const file = `${split}.txt`;
    writeFileAtomic(join(outDir, file), text);
    files[split] = {
      file,
      ...countDocuments(bySplit[split]),
      fileBytes: Buffer.byteLength(text, 'utf8'),
      sha256: createHash('sha256').update(text, 'utf8').digest('hex'),
      ...(split === 'train' ? {} : { ids: bySplit[split].map((doc) => doc.id) }),
    };
  }
  return files;
}
