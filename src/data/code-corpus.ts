/**
 * The code corpus as text: which files of an npm package are hand-written JavaScript or
 * TypeScript worth training on, how such a file becomes a document, which licences qualify, and
 * which files of a held-out package are kept.
 *
 * Pure functions only (paths and texts in, decisions and documents out), so the tests need no
 * package. Fetching, verifying and reading the tarballs and writing data/code-corpus/ is
 * scripts/build-code-corpus.ts; these rules in prose are in data/code-corpus/README.md. The split
 * rule, document separator and file format are the prose corpus's (corpus.ts).
 *
 * Sections: licences, which files are code, normalisation and documents, repeated licence
 * headers, held-out samples.
 */
import { createHash } from 'node:crypto';
import { END_OF_TEXT, type CorpusDocument, type HeldOutFractions } from './corpus.ts';

// ---------------------------------------------------------------------------------------------
// Licences

/**
 * SPDX identifiers of the licences a package may carry: permissive, allowing redistribution and
 * derived works with at most a notice. MIT-0 is MIT without even the notice.
 */
export const PERMISSIVE_LICENCES: ReadonlySet<string> = new Set([
  'MIT',
  'MIT-0',
  'ISC',
  'BSD-2-Clause',
  'BSD-3-Clause',
  'Apache-2.0',
  '0BSD',
  'CC0-1.0',
]);

/**
 * Whether an SPDX licence expression allows the package: `A OR B` when either does, `A AND B`
 * when both do, parentheses as usual (AND binds tighter). Anything else (an unknown id,
 * "SEE LICENSE IN ...", "UNLICENSED", an empty string) does not.
 */
export function isPermissiveLicence(expression: string): boolean {
  const expr = stripParens(expression.trim());
  const any = splitTopLevel(expr, 'OR');
  if (any.length > 1) return any.some(isPermissiveLicence);
  const all = splitTopLevel(expr, 'AND');
  if (all.length > 1) return all.every(isPermissiveLicence);
  return PERMISSIVE_LICENCES.has(expr);
}

function stripParens(expr: string): string {
  while (expr.startsWith('(') && expr.endsWith(')') && closingParen(expr) === expr.length - 1) expr = expr.slice(1, -1).trim();
  return expr;
}

/** Index of the parenthesis that closes the one at 0. */
function closingParen(expr: string): number {
  let depth = 0;
  for (let i = 0; i < expr.length; i++) {
    if (expr[i] === '(') depth++;
    else if (expr[i] === ')' && --depth === 0) return i;
  }
  return -1;
}

function splitTopLevel(expr: string, operator: 'AND' | 'OR'): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  const token = ` ${operator} `;
  for (let i = 0; i < expr.length; i++) {
    if (expr[i] === '(') depth++;
    else if (expr[i] === ')') depth--;
    else if (depth === 0 && expr.startsWith(token, i)) {
      parts.push(expr.slice(start, i).trim());
      start = i + token.length;
      i += token.length - 1;
    }
  }
  parts.push(expr.slice(start).trim());
  return parts;
}

/**
 * The licence of a package.json as one SPDX expression: `license` as a string or `{type}`, or
 * the old `licenses` array of `{type}` (alternatives, joined with OR); null when there is none.
 */
export function licenceOf(packageJson: Record<string, unknown>): string | null {
  const typeOf = (value: unknown): string | null =>
    typeof value === 'string' ? value : typeof value === 'object' && value !== null && typeof (value as { type?: unknown }).type === 'string' ? (value as { type: string }).type : null;
  const single = typeOf(packageJson.license);
  if (single !== null) return single;
  if (Array.isArray(packageJson.licenses)) {
    const types = packageJson.licenses.map(typeOf).filter((t): t is string => t !== null);
    if (types.length > 0) return types.length === 1 ? types[0]! : `(${types.join(' OR ')})`;
  }
  return null;
}

/** The package's licence file at its root (LICENSE, LICENCE.md, LICENSE-MIT, COPYING, ...), or null. */
export function licenceFileOf(paths: readonly string[]): string | null {
  return [...paths].sort().find((path) => /^(?:licen[cs]e|copying)(?:[-._][^/]*)?$/i.test(path)) ?? null;
}

// ---------------------------------------------------------------------------------------------
// Which files are code

/** Why a file of a package is not in the corpus; a file kept has none. */
export type SkipReason =
  | 'excluded folder'
  | 'minified or bundled name'
  | 'declaration of a shipped source'
  | 'compiled from a shipped source'
  | 'binary'
  | 'too large'
  | 'source map reference'
  | 'generated'
  | 'compiled output'
  | 'long lines'
  | 'data'
  | 'empty'
  | 'licence boilerplate only'
  | 'contains the separator'
  | 'duplicate';

const CODE_EXTENSION = /\.(?:[cm]?[jt]s|[jt]sx)$/;
const DECLARATION = /\.d\.[cm]?ts$/;

/** Whether `path` names a JavaScript or TypeScript file (declarations included). */
export function isCodePath(path: string): boolean {
  return CODE_EXTENSION.test(path);
}

/**
 * Folders whose files are build output, other projects' code or test data rather than the
 * package's own hand-written source: bundles and compiled copies (dist, build, esm, cjs, umd,
 * fesm2022, ...), vendored copies (node_modules, vendor, third_party), fixtures and snapshots,
 * and anything named generated.
 */
const EXCLUDED_FOLDER =
  /^(?:node_modules|dist|build|builds|bundles?|umd|min|out|coverage|cjs|esm|es|es5|es2015|es2017|es2020|fesm\d*|vendors?|third[-_]party|fixtures?|__fixtures__|__snapshots__|__generated__|generated)$/i;

/** File names of minified or bundled builds: x.min.js, x-min.js, x.bundle.js, x.umd.js, x.production.js. */
const BUNDLED_NAME = /[.-]min\.[cm]?js$|\.min\.|\.bundle\.|\.umd\.|\.prod(?:uction)?\.|\.development\./i;

/** Why the path alone rules a code file out, or null. `path` is relative to the package root. */
export function pathSkipReason(path: string): SkipReason | null {
  const parts = path.split('/');
  if (parts.slice(0, -1).some((dir) => EXCLUDED_FOLDER.test(dir))) return 'excluded folder';
  if (BUNDLED_NAME.test(parts.at(-1)!)) return 'minified or bundled name';
  return null;
}

/** The file name without folders and without its code extension(s): "src/a/Foo.d.ts" -> "Foo". */
function stem(path: string): string {
  return path.split('/').at(-1)!.replace(DECLARATION, '').replace(CODE_EXTENSION, '');
}

/**
 * Code files that copy a TypeScript source the package also ships: a declaration (x.d.ts) or a
 * JavaScript file (x.js) with the same name as a non-declaration x.ts anywhere in the package is
 * compiler output. Returns the reason for each such path.
 */
export function shadowedBySources(paths: readonly string[]): Map<string, SkipReason> {
  const sources = new Set(paths.filter((p) => /\.(?:[cm]?ts|tsx)$/.test(p) && !DECLARATION.test(p)).map(stem));
  const out = new Map<string, SkipReason>();
  for (const path of paths) {
    if (!sources.has(stem(path))) continue;
    if (DECLARATION.test(path)) out.set(path, 'declaration of a shipped source');
    else if (/\.(?:[cm]?js|jsx)$/.test(path)) out.set(path, 'compiled from a shipped source');
  }
  return out;
}

/** Largest file kept, in bytes: hand-written files are smaller; machine-made ones (lib.dom.d.ts) are not. */
export const MAX_FILE_BYTES = 600_000;
/** Longest line kept, in characters: minified code and inlined data have longer ones. */
export const MAX_LINE_CHARS = 1000;
/** Largest mean length of the non-blank lines, in characters. */
export const MAX_MEAN_LINE_CHARS = 100;
/** Least fraction of letters among the non-space characters: below it a file is mostly numbers or tables. */
export const MIN_LETTER_FRACTION = 0.3;

/** A `//# sourceMappingURL=` comment: the file was produced from another by a tool. */
const SOURCE_MAP_REFERENCE = /^[ \t]*(?:\/\/|\/\*)[#@] sourceMappingURL=/m;

/**
 * What a generator writes at the top of its output (looked for in the first GENERATED_HEAD_CHARS):
 * "@generated", "DO NOT EDIT", "auto-generated", or a comment line opening with "generated by".
 */
const GENERATED_MARK =
  /@generated\b|\bdo not edit\b|\bauto-?generated\b|\bcode generated\b|^\W*(?:this (?:file|code) (?:is|was|has been) )?(?:auto-?)?generated (?:by|from|with)\b/im;
const GENERATED_HEAD_CHARS = 600;

/**
 * Helpers that compilers and bundlers emit and people do not write: tsc's and Babel's CommonJS
 * interop, TypeScript's downlevel helpers, esbuild's, webpack's banner, each at the start of a
 * line (where a tool writes it; tools that emit them hold them in strings instead).
 */
const COMPILED_MARK =
  /^(?:Object\.defineProperty\(exports, ["']__esModule["']|exports\.__esModule = true|\/\*{6}\/|function _interopRequireDefault\(|function _classCallCheck\(|var __awaiter = |var __createBinding = |var __importDefault = |var __defProp = Object\.defineProperty)|regeneratorRuntime\.mark\(/m;

/** Why the (normalised) text of a code file rules it out, or null. */
export function contentSkipReason(text: string): SkipReason | null {
  if (text.includes('\u0000')) return 'binary';
  if (Buffer.byteLength(text, 'utf8') > MAX_FILE_BYTES) return 'too large';
  if (SOURCE_MAP_REFERENCE.test(text)) return 'source map reference';
  if (GENERATED_MARK.test(text.slice(0, GENERATED_HEAD_CHARS))) return 'generated';
  if (COMPILED_MARK.test(text)) return 'compiled output';
  let longest = 0;
  let chars = 0;
  let lines = 0;
  for (const line of text.split('\n')) {
    longest = Math.max(longest, line.length);
    if (line.trim() === '') continue;
    chars += line.length;
    lines++;
  }
  if (longest > MAX_LINE_CHARS || chars > MAX_MEAN_LINE_CHARS * lines) return 'long lines';
  const visible = text.replace(/\s+/g, '');
  const letters = visible.replace(/[^\p{L}]/gu, '').length;
  if (letters < MIN_LETTER_FRACTION * visible.length) return 'data';
  if (text.includes(END_OF_TEXT)) return 'contains the separator';
  return null;
}

// ---------------------------------------------------------------------------------------------
// Normalisation and documents

/**
 * The clean-up a code file gets, which keeps it as its author wrote it: the byte order mark
 * removed, CRLF and CR to LF, trailing spaces and tabs cut from every line, leading blank lines
 * and trailing whitespace removed. Tabs, quotes and non-ASCII characters stay (unlike the prose
 * rules, normaliseText). Idempotent.
 */
export function normaliseCode(raw: string): string {
  return raw
    .replace(/^\uFEFF/, '')
    .replace(/\r\n?/g, '\n')
    .replace(/[ \t]+$/gm, '')
    .replace(/^\n+/, '')
    .replace(/\s+$/, '');
}

/**
 * A package file as a corpus document: id `<package>/<path>`, source the package name, text a
 * header line `// <package>/<path>` and the file's (normalised) text.
 */
export function codeDocument(packageName: string, path: string, code: string): CorpusDocument {
  const id = `${packageName}/${path}`;
  return { id, source: packageName, text: `// ${id}\n${code}` };
}

// ---------------------------------------------------------------------------------------------
// Repeated licence headers

/** A header repeated in at least this many files of one package is boilerplate. */
export const REPEATED_HEADER_MIN_FILES = 3;

/**
 * The comment a file opens with (after a `#!` line, if any): one block comment or a run of `//`
 * lines, with the blank lines after it; '' when the file opens with code.
 */
export function leadingComment(text: string): string {
  const shebang = /^#![^\n]*\n/.exec(text)?.[0] ?? '';
  const rest = text.slice(shebang.length);
  const m = /^(?:\/\*[\s\S]*?\*\/[^\n]*(?:\n|$)|(?:\/\/[^\n]*(?:\n|$))+)\n*/.exec(rest);
  return m ? m[0] : '';
}

/**
 * Files of one package with a repeated licence header removed from all but the first file that
 * carries it (in the given order): a leading comment that mentions a copyright or licence and
 * opens at least REPEATED_HEADER_MIN_FILES of the files. The notice stays in the corpus once per
 * package instead of dominating its small files.
 */
export function dropRepeatedLicenceHeaders<T extends { path: string; text: string }>(files: readonly T[]): T[] {
  const counts = new Map<string, number>();
  for (const file of files) {
    const header = leadingComment(file.text);
    if (header !== '') counts.set(header, (counts.get(header) ?? 0) + 1);
  }
  const kept = new Set<string>();
  return files.map((file) => {
    const header = leadingComment(file.text);
    if (header === '' || (counts.get(header) ?? 0) < REPEATED_HEADER_MIN_FILES || !/copyright|licen[cs]e|spdx/i.test(header)) return file;
    if (!kept.has(header)) {
      kept.add(header);
      return file;
    }
    const shebang = /^#![^\n]*\n/.exec(file.text)?.[0] ?? '';
    return { ...file, text: shebang + file.text.slice(shebang.length + header.length) };
  });
}

// ---------------------------------------------------------------------------------------------
// The split: by package, within budgets

/**
 * Whole packages are held out: about 4 % of them each for valid and test, chosen by the hash of
 * the package name (corpus.ts's splitOf), so held-out figures measure code from packages that
 * training never saw.
 */
export const CODE_HELD_OUT: HeldOutFractions = { valid: 0.04, test: 0.04 };
/** Bytes of each held-out package kept in its split (the rest of it is in no split). */
export const HELD_OUT_PACKAGE_BYTES = 40_000;
/**
 * Bytes of a training package kept: the few largest packages (a game engine, a 3D library)
 * would otherwise be a third of the corpus.
 */
export const TRAIN_PACKAGE_BYTES = 3_000_000;

/**
 * The documents kept when a package may contribute at most `budgetBytes` (UTF-8 bytes of the
 * texts): in the order of sha256(id), each one that still fits, returned in input order. Used to
 * cap the largest packages in training (so a few do not make up most of the corpus) and to keep
 * held-out files small; what is not kept is in no split.
 */
export function sampleWithin(docs: readonly CorpusDocument[], budgetBytes: number): CorpusDocument[] {
  const order = (doc: CorpusDocument) => createHash('sha256').update(doc.id, 'utf8').digest('hex');
  const byHash = [...docs].sort((a, b) => (order(a) < order(b) ? -1 : 1));
  const chosen = new Set<CorpusDocument>();
  let used = 0;
  for (const doc of byHash) {
    const bytes = Buffer.byteLength(doc.text, 'utf8');
    if (used + bytes > budgetBytes) continue;
    chosen.add(doc);
    used += bytes;
  }
  return docs.filter((doc) => chosen.has(doc));
}
