/**
 * The corpus text rules (src/data/corpus.ts) on small hand-made samples of each source's layout,
 * the split rule, the split file format, and the committed held-out files against their
 * manifest. Needs none of the Debian or npm source packages.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { FormatError } from '../src/errors.ts';
import { readCheckedSplitFile, type ManifestFile } from './helpers/split-files.ts';
import {
  DOCUMENT_SEPARATOR,
  END_OF_TEXT,
  assignSplits,
  dictdNumber,
  formatSplitFile,
  makeDocument,
  normaliseText,
  parseDevilDictionary,
  parseJargonFile,
  parseKjv,
  parseSplitFile,
  reflow,
  splitOf,
  type CorpusDocument,
} from '../src/data/corpus.ts';

// ---------------------------------------------------------------------------------------------
// Normalisation and reflow

test('normaliseText: line endings, NFC, ASCII punctuation, controls, spaces, blank lines', () => {
  const raw = '\r\n\n  Cafe\u0301 \u201Cquoted\u201D \u2014 it\u2019s\u2026\t ok  \r\nnext\u0002line\u00A0x\u200B\n\n\n\nlast \n\n';
  // Inner runs of spaces stay (they may be layout); the tab became one more space.
  assert.equal(normaliseText(raw), '  Caf\u00E9 "quoted" -- it\'s...  ok\nnextline x\n\nlast');
});

test('normaliseText is idempotent', () => {
  const once = normaliseText('a\u2013b\r\r\r\n   c  \n\n\n\nd\u0007');
  assert.equal(normaliseText(once), once);
});

const JARGON_LAYOUT = { baseIndent: 3, openerIndent: 0, signatureIndent: Infinity };
const DEVIL_LAYOUT = { baseIndent: 0, openerIndent: 8, signatureIndent: 40 };

test('reflow joins hard-wrapped prose into one line and squeezes double spaces', () => {
  const text = '   The first line  of a\n   paragraph.  Then more.\n\n   Second paragraph.';
  assert.equal(reflow(text, JARGON_LAYOUT), 'The first line of a paragraph. Then more.\n\nSecond paragraph.');
});

test('reflow keeps a block with any indented line as laid out (code, verse, art)', () => {
  const text = '   if (x)\n   {\n           body;\n   }\n\n   Prose  again.';
  assert.equal(reflow(text, JARGON_LAYOUT), 'if (x)\n{\n        body;\n}\n\nProse again.');
});

test('reflow: indented openers start paragraphs in a prose block; verse and signatures', () => {
  const text = [
    'WORD, n.  A definition that',
    'wraps.',
    '    "A quoted line," said he.',
    '    "And another,"',
    'he added.',
    '',
    '    Verse line one',
    '        verse line two',
    '                                                    G.J.',
  ].join('\n');
  assert.equal(
    reflow(text, DEVIL_LAYOUT),
    [
      'WORD, n. A definition that wraps.',
      '"A quoted line," said he.',
      '"And another," he added.',
      '',
      '    Verse line one',
      '        verse line two',
      'G.J.',
    ].join('\n'),
  );
});

// ---------------------------------------------------------------------------------------------
// Sources

test('parseKjv: one document per chapter, verses one a line without references', () => {
  const listing = 'Ge1:1 In the beginning.\nGe1:2 And the earth.\nGe2:1 Thus the heavens.\n1Sm3:1 And the child Samuel.\n';
  const docs = parseKjv(listing, 'bible');
  assert.deepEqual(
    docs.map((d) => [d.id, d.text]),
    [
      ['kjv/Ge.1', 'In the beginning.\nAnd the earth.'],
      ['kjv/Ge.2', 'Thus the heavens.'],
      ['kjv/1Sm.3', 'And the child Samuel.'],
    ],
  );
  assert.throws(() => parseKjv('Ge1:1 ok\nnot a verse', 'bible'), (err: unknown) => err instanceof FormatError && /line 2/.test(err.message));
});

/** A miniature of Debian's jargon.txt: front matter, chapters, a Part page, the glossary, appendices. */
const JARGON_SAMPLE = [
  '                                The Jargon File',
  '',
  '(version 4.4.7)',
  '',
  '   Table of Contents',
  '',
  '   Welcome',
  '',
  'Chapter 1. Hacker Slang',
  '',
  '   Table of Contents',
  '',
  '   Verb Doubling',
  '',
  '   Soundalike Slang',
  '',
  '   Hackers use {jargon} a',
  '   lot.',
  '',
  '┌────┬────┐',
  '│ a  │ b  │',
  '└────┴────┘',
  '',
  'Chapter 3. Revision History',
  '',
  '   Versions and their sizes.',
  '',
  'Chapter 12. Format for New Entries',
  '',
  '   Send them in.',
  '',
  '                          Part II. The Jargon Lexicon',
  '',
  '   The Crunchly saga begins here.',
  '',
  'Glossary',
  '',
  '  0',
  '',
  '   (TM)',
  '',
  '   1TBS',
  '',
  '   :(TM): //',
  '',
  '   [Usenet] A mark.',
  '',
  '   :1TBS: //, n.',
  '',
  '   The "One True Brace Style"; see {indent',
  '   style}.',
  '',
  '   (The next cartoon in the Crunchly saga is 73-05-18.)',
  '',
  '  A',
  '',
  '   abbrev',
  '',
  '   :abbrev: /*-breev\'/, /*-brev\'/, n.',
  '',
  '   Common abbreviation for abbreviation.',
  '',
  '                             Part III. Appendices',
  '',
  '   Table of Contents',
  '',
  '   A. Hacker Folklore',
  '',
  'Appendix A. Hacker Folklore',
  '',
  '   Legends and fables.',
  '',
  'Bibliography',
  '',
  '   Some books.',
].join('\n');

test('parseJargonFile: entries and sections, without contents lists, tables, Part pages or skipped sections', () => {
  const docs = parseJargonFile(JARGON_SAMPLE, 'jargon.txt');
  assert.deepEqual(
    docs.map((d) => [d.id, d.text]),
    [
      ['jargon/section/Chapter 1. Hacker Slang', 'Chapter 1. Hacker Slang\n\nHackers use jargon a lot.'],
      ['jargon/section/Chapter 12. Format for New Entries', 'Chapter 12. Format for New Entries\n\nSend them in.'],
      ['jargon/entry/(TM)', '(TM):\n\n[Usenet] A mark.'],
      ['jargon/entry/1TBS', '1TBS: n.\n\nThe "One True Brace Style"; see indent style.'],
      ['jargon/entry/abbrev', "abbrev: /*-breev'/, /*-brev'/, n.\n\nCommon abbreviation for abbreviation."],
      ['jargon/section/Appendix A. Hacker Folklore', 'Appendix A. Hacker Folklore\n\nLegends and fables.'],
    ],
  );
});

/** A dictd database: the text and its index, offsets and lengths in base-64 digits. */
function dictd(entries: { word: string; text: string }[]): { dict: Uint8Array; index: string } {
  const digits = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  const b64 = (n: number): string => (n < 64 ? digits[n]! : b64(Math.floor(n / 64)) + digits[n % 64]!);
  let body = '';
  const lines: string[] = [];
  for (const { word, text } of entries) {
    const offset = Buffer.byteLength(body);
    body += text;
    lines.push(`${word}\t${b64(offset)}\t${b64(Buffer.byteLength(text))}`);
  }
  // The index is sorted by headword, not by position in the text.
  return { dict: Buffer.from(body), index: lines.sort().join('\n') + '\n' };
}

test('parseDevilDictionary: one document per entry in text order, database entries left out', () => {
  const { dict, index } = dictd([
    { word: '00databaseinfo', text: 'The Internet Wiretap edition.\n\n' },
    { word: 'zeal', text: 'ZEAL, n.  A certain nervous disorder\nafflicting the young.\n\n' },
    { word: 'abasement', text: 'ABASEMENT, n.  A decent and\ncustomary mental attitude.\n\n    A verse\n                                         G.J.\n\n' },
    { word: 'zeal', text: 'ZEAL, n.  Again.\n' },
  ]);
  const docs = parseDevilDictionary(dict, index, 'devil.dict');
  assert.deepEqual(
    docs.map((d) => [d.id, d.text]),
    [
      ['devil/zeal', 'ZEAL, n. A certain nervous disorder afflicting the young.'],
      ['devil/abasement', 'ABASEMENT, n. A decent and customary mental attitude.\n\n    A verse\nG.J.'],
      ['devil/zeal#2', 'ZEAL, n. Again.'],
    ],
  );
  assert.throws(() => parseDevilDictionary(dict, 'word\tA\n', 'devil.index'), FormatError);
  assert.throws(() => parseDevilDictionary(dict, 'word\tA\t////\n', 'devil.index'), /runs past the end/);
});

test('dictdNumber reads base-64 digits, most significant first', () => {
  assert.equal(dictdNumber('A', 'x'), 0);
  assert.equal(dictdNumber('b', 'x'), 27);
  assert.equal(dictdNumber('BA', 'x'), 64);
  assert.equal(dictdNumber('BdqM', 'x'), ((1 * 64 + 29) * 64 + 42) * 64 + 12);
  assert.throws(() => dictdNumber('A-', 'x'), FormatError);
});

// ---------------------------------------------------------------------------------------------
// The split

test('splitOf is a fixed function of the id, with about 2% valid and 2% test', () => {
  assert.equal(splitOf('kjv/Ge.1'), splitOf('kjv/Ge.1'));
  const counts = { train: 0, valid: 0, test: 0 };
  for (let i = 0; i < 20000; i++) counts[splitOf(`doc/${i}`)]++;
  assert.ok(Math.abs(counts.valid / 20000 - 0.02) < 0.005, `valid ${counts.valid}`);
  assert.ok(Math.abs(counts.test / 20000 - 0.02) < 0.005, `test ${counts.test}`);
});

test('assignSplits puts every document in exactly one split, whatever the input order', () => {
  const docs: CorpusDocument[] = Array.from({ length: 2000 }, (_, i) => makeDocument('s', String(i), `text ${i}`, 'x'));
  const a = assignSplits(docs);
  const b = assignSplits([...docs].reverse());
  const where = new Map<string, string>();
  for (const [split, group] of Object.entries(a)) {
    for (const doc of group) {
      assert.equal(where.has(doc.id), false, `${doc.id} in two splits`);
      where.set(doc.id, split);
    }
  }
  assert.equal(where.size, docs.length);
  for (const [split, group] of Object.entries(b)) for (const doc of group) assert.equal(where.get(doc.id), split);
  assert.ok(a.valid.length > 0 && a.test.length > 0);
  assert.throws(() => assignSplits([docs[0]!, docs[0]!]), /appears twice/);
});

test('assignSplits by group keeps each group whole, with the fractions given', () => {
  const docs: CorpusDocument[] = Array.from({ length: 3000 }, (_, i) => makeDocument(`pkg${i % 300}`, String(i), `text ${i}`, 'x'));
  const heldOut = { valid: 0.1, test: 0.1 };
  const bySplit = assignSplits(docs, { groupOf: (doc) => doc.source, heldOut });
  const splitOfGroup = new Map<string, string>();
  for (const [split, group] of Object.entries(bySplit)) {
    for (const doc of group) {
      assert.equal(splitOfGroup.get(doc.source) ?? split, split, `${doc.source} divided`);
      splitOfGroup.set(doc.source, split);
      assert.equal(splitOf(doc.source, heldOut), split);
    }
  }
  assert.ok(bySplit.valid.length > 0 && bySplit.test.length > 0);
});

test('split files: documents joined by the separator line, and parsed back', () => {
  const docs = [makeDocument('s', 'a', 'First.\n\nSecond paragraph.', 'x'), makeDocument('s', 'b', '  indented', 'x')];
  const text = formatSplitFile(docs);
  assert.equal(text, `First.\n\nSecond paragraph.\n\n${END_OF_TEXT}\n\n  indented\n`);
  assert.equal(DOCUMENT_SEPARATOR, `\n\n${END_OF_TEXT}\n\n`);
  assert.deepEqual(parseSplitFile(text), ['First.\n\nSecond paragraph.', '  indented']);
  assert.equal(formatSplitFile([]), '');
  assert.deepEqual(parseSplitFile(''), []);
  assert.throws(() => formatSplitFile([makeDocument('s', 'c', `a ${END_OF_TEXT} b`, 'x')]), /separator/);
});

// ---------------------------------------------------------------------------------------------
// The committed held-out files

interface Manifest {
  sources: { id: string }[];
  files: Record<string, ManifestFile>;
}

function readManifest(corpus: string): { dir: URL; manifest: Manifest } {
  const dir = new URL(`../data/${corpus}/`, import.meta.url);
  return { dir, manifest: JSON.parse(readFileSync(new URL('manifest.json', dir), 'utf8')) as Manifest };
}

for (const corpus of ['corpus', 'prose-corpus']) {
  test(`data/${corpus} valid.txt and test.txt match their manifest and the split rule`, () => {
    const { dir, manifest } = readManifest(corpus);
    const texts = new Map<string, string>();
    for (const split of ['valid', 'test'] as const) {
      const entry = manifest.files[split]!;
      const docs = readCheckedSplitFile(dir, entry);
      for (const id of entry.ids) assert.equal(splitOf(id), split, id);
      for (const doc of docs) {
        assert.equal(normaliseText(doc), doc);
        assert.equal(texts.has(doc), false, 'a document in both valid and test');
        texts.set(doc, split);
      }
    }
  });
}

test('data/prose-corpus holds out the same documents as data/corpus from the sources they share', () => {
  const base = readManifest('corpus').manifest;
  const prose = readManifest('prose-corpus').manifest;
  const shared = new Set(base.sources.map((s) => s.id));
  for (const split of ['valid', 'test'] as const) {
    const fromShared = prose.files[split]!.ids.filter((id) => shared.has(id.split('/')[0]!));
    assert.deepEqual(fromShared, base.files[split]!.ids);
  }
});
