/**
 * Reading a committed held-out split file (data/corpus, data/prose-corpus, data/code-corpus) and
 * checking it against its manifest entry: size, sha256 and document count.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseSplitFile } from '../../src/data/corpus.ts';

export interface ManifestFile {
  file: string;
  documents: number;
  fileBytes: number;
  sha256: string;
  ids: string[];
}

/** The documents of `dir`/`entry.file`, after asserting that the file is the one the manifest describes. */
export function readCheckedSplitFile(dir: URL, entry: ManifestFile): string[] {
  const bytes = readFileSync(new URL(entry.file, dir));
  assert.equal(bytes.length, entry.fileBytes, `${entry.file}: size`);
  assert.equal(createHash('sha256').update(bytes).digest('hex'), entry.sha256, `${entry.file}: sha256`);
  const docs = parseSplitFile(bytes.toString('utf8'));
  assert.equal(docs.length, entry.documents, `${entry.file}: documents`);
  assert.equal(entry.ids.length, entry.documents, `${entry.file}: ids`);
  return docs;
}
