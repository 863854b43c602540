/**
 * Documentation pages as corpus documents, for the prose corpus (data/prose-corpus): the Python
 * documentation's reStructuredText sources, the Node.js API docs in Markdown, and the PostgreSQL
 * and SQLite manuals in HTML (turned into text by html-to-text, a dev dependency: only the corpus
 * builder and the tests load this module).
 *
 * Pure functions, as in corpus.ts; reading the Debian packages is scripts/build-corpus.ts, and
 * the provenance and licence of each source are in data/prose-corpus/README.md.
 */
import { compile as compileHtmlToText } from 'html-to-text';
import { makeDocument, normaliseText, type CorpusDocument } from './corpus.ts';

/** Python documentation pages left out: legal text (licence, copyright) and pages that are only a list of links. */
const PYTHON_DOCS_SKIPPED = new Set(['license', 'copyright', 'contents', 'whatsnew/changelog']);

/**
 * One page of the Python documentation as its reStructuredText source, as Sphinx ships it beside
 * the HTML (Debian's python3.X-doc: html/_sources/library/os.rst.txt). `name` is its path below
 * _sources without ".rst.txt" ("library/os"). The markup and the hard-wrapped layout are kept
 * as written; null for PYTHON_DOCS_SKIPPED pages.
 */
export function parsePythonDocPage(name: string, text: string, origin: string): CorpusDocument | null {
  if (PYTHON_DOCS_SKIPPED.has(name)) return null;
  return makeDocument('python-docs', name, text, origin);
}

/**
 * One page of the Node.js API documentation in Markdown (Debian's nodejs-doc:
 * /usr/share/doc/nodejs/api/fs.md). The HTML comments that carry the doc tool's metadata
 * ("<!-- YAML added: v0.1.90 -->", "<!--introduced_in=v0.10.0-->") are removed; the markup and
 * the hard-wrapped layout are kept as written. The index page (a list of links) is left out (null).
 */
export function parseNodeDocPage(name: string, text: string, origin: string): CorpusDocument | null {
  if (name === 'index') return null;
  return makeDocument('node-docs', name, text.replace(/<!--[\s\S]*?-->/g, ''), origin);
}

/**
 * HTML to plain text for documentation pages (html-to-text): no line wrapping, link targets and
 * images dropped, headings as written (not upper-cased), data tables drawn with spaces and
 * dashes, scripts, styles and forms skipped, plus each site's own navigation (`skip` selectors).
 */
function htmlConverter(skip: readonly string[]): (html: string) => string {
  return compileHtmlToText({
    wordwrap: false,
    selectors: [
      { selector: 'a', options: { ignoreHref: true } },
      { selector: 'img', format: 'skip' },
      ...['h1', 'h2', 'h3', 'h4', 'h5', 'h6'].map((selector) => ({ selector, options: { uppercase: false } })),
      { selector: 'table', format: 'dataTable', options: { uppercaseHeaderCells: false } },
      ...['script', 'style', 'form', ...skip].map((selector) => ({ selector, format: 'skip' })),
    ],
  });
}

/**
 * PostgreSQL documentation pages left out: the back-of-book index, and appendices that are one
 * big table (error codes, SQL key words).
 */
const POSTGRES_DOCS_SKIPPED = new Set(['bookindex', 'errcodes-appendix', 'sql-keywords-appendix']);
const postgresText = htmlConverter(['div.navheader', 'div.navfooter', 'div.toc']);

/**
 * One page of the PostgreSQL manual as HTML (Debian's postgresql-doc-15:
 * /usr/share/doc/postgresql-doc-15/html/tutorial-join.html; `name` is the file name without
 * ".html"), as text without the navigation bars and tables of contents; null for
 * POSTGRES_DOCS_SKIPPED pages and for pages with no text left (a part's title page).
 */
export function parsePostgresDocPage(name: string, html: string, origin: string): CorpusDocument | null {
  if (POSTGRES_DOCS_SKIPPED.has(name)) return null;
  const text = normaliseText(postgresText(html));
  return text === '' ? null : makeDocument('postgres-docs', name, text, origin);
}

/**
 * SQLite documentation pages left out: machine-made lists (requirements, cross-reference and
 * keyword indexes, the site map, lists of functions, objects and constants), syntax diagram
 * pages (pictures) and release histories.
 */
const SQLITE_DOCS_SKIPPED =
  /^(?:requirements|doc_\w+_crossref|keyword_index|sitemap|syntaxdiagrams|docs|toc|changes|chronology|releaselog\/.*|syntax\/.*|(?:.*\/)?(?:funclist|objlist|constlist))$/;
const sqliteText = htmlConverter(['div.nosearch', 'div.fancy_toc', 'div.searchmenu']);

/**
 * One page of the SQLite documentation as HTML (Debian's sqlite3-doc: /usr/share/doc/sqlite3/
 * lang_select.html, c3ref/open.html; `name` is the path without ".html"), as text without the
 * site's menus and tables of contents; null for SQLITE_DOCS_SKIPPED pages and empty ones.
 */
export function parseSqliteDocPage(name: string, html: string, origin: string): CorpusDocument | null {
  if (SQLITE_DOCS_SKIPPED.test(name)) return null;
  const text = normaliseText(sqliteText(html));
  return text === '' ? null : makeDocument('sqlite-docs', name, text, origin);
}
