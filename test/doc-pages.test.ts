/**
 * The documentation page rules (src/data/doc-pages.ts) on small hand-made pages in the layout of
 * each manual: Node.js Markdown, Python reStructuredText, PostgreSQL and SQLite HTML.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseNodeDocPage, parsePostgresDocPage, parsePythonDocPage, parseSqliteDocPage } from '../src/data/doc-pages.ts';

test('parseNodeDocPage drops the doc tool\'s HTML comments and keeps the Markdown', () => {
  const md = '# File system\n\n<!--introduced_in=v0.10.0-->\n\n> Stability: 2 - Stable\n\n<!-- YAML\nadded: v0.1.90\n-->\n\n```js\nconst fs = require(\'node:fs\');\n\nfs.readFileSync(p);\n```\n';
  const doc = parseNodeDocPage('fs', md, 'fs.md');
  assert.equal(doc?.id, 'node-docs/fs');
  assert.equal(doc?.text, "# File system\n\n> Stability: 2 - Stable\n\n```js\nconst fs = require('node:fs');\n\nfs.readFileSync(p);\n```");
  assert.equal(parseNodeDocPage('index', md, 'index.md'), null);
});

test('parsePythonDocPage keeps the reStructuredText as written, leaves legal pages out', () => {
  const rst = ':mod:`bisect` --- Array bisection algorithm\n=============================================\n\nThis module provides support for maintaining a list in sorted order without\nhaving to sort the list after each insertion.\n';
  assert.equal(parsePythonDocPage('library/bisect', rst, 'bisect.rst.txt')?.text, rst.trimEnd());
  assert.equal(parsePythonDocPage('library/bisect', rst, 'x')?.id, 'python-docs/library/bisect');
  assert.equal(parsePythonDocPage('license', rst, 'license.rst.txt'), null);
});

test('parsePostgresDocPage: text without navigation bars and contents, code kept', () => {
  const html = `<html><body><div class="navheader"><table><tr><th>2.6. Joins Between Tables</th></tr><tr><td><a href="x.html">Prev</a></td></tr></table><hr></div>
<div class="sect1"><h2 class="title">2.6. Joins Between Tables</h2><div class="toc"><dl><dt>2.6.1. Inner</dt></dl></div>
<p>Queries can access <a href="sql.html">multiple tables</a> at once.</p>
<pre class="programlisting">SELECT *
    FROM weather JOIN cities ON city = name;</pre></div>
<div class="navfooter"><hr><a href="y.html">Next</a></div></body></html>`;
  const doc = parsePostgresDocPage('tutorial-join', html, 'tutorial-join.html');
  assert.equal(doc?.id, 'postgres-docs/tutorial-join');
  assert.equal(doc?.text, '2.6. Joins Between Tables\n\nQueries can access multiple tables at once.\n\nSELECT *\n    FROM weather JOIN cities ON city = name;');
  assert.equal(parsePostgresDocPage('bookindex', html, 'bookindex.html'), null);
});

test('parseSqliteDocPage: text without the site menus; lists and diagrams left out', () => {
  const html = `<html><body><div class=nosearch><a href="index.html"><img src="logo.gif"></a><div class="menu mainmenu"><ul><li><a href="about.html">About</a></ul></div></div>
<script>function toggle_div(nm) {}</script>
<div class=fancy><div class=fancy_title>Atomic Commit In SQLite</div><div class=fancy_toc><a href="#intro">1. Introduction</a></div>
<h1 id="intro">1. Introduction</h1><p>An important feature of transactional databases is <i>atomic commit</i>.</p></div></body></html>`;
  const doc = parseSqliteDocPage('atomiccommit', html, 'atomiccommit.html');
  assert.equal(doc?.id, 'sqlite-docs/atomiccommit');
  assert.equal(doc?.text, 'Atomic Commit In SQLite\n\n1. Introduction\n\nAn important feature of transactional databases is atomic commit.');
  for (const name of ['requirements', 'doc_keyword_crossref', 'syntax/select-stmt', 'c3ref/funclist', 'releaselog/3_40_1']) {
    assert.equal(parseSqliteDocPage(name, html, `${name}.html`), null, name);
  }
});
