/**
 * Builds the code corpus, data/code-corpus/{train,valid,test}.txt and manifest.json, from the npm
 * packages pinned in data/code-corpus/packages.json (name, version, integrity). Tarballs are
 * fetched with `npm pack` into a cache folder outside git, checked against the pinned sha512,
 * and read without unpacking. The same pins give byte-identical files.
 *
 * Usage: npx tsx scripts/build-code-corpus.ts [--packages FILE] [--out DIR] [--cache DIR]
 *
 * Which files are kept and how they become documents: src/data/code-corpus.ts; in prose, with
 * the licences: data/code-corpus/README.md.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { list } from 'tar';
import type { z } from 'zod';
import { exitOnPpdError, FormatError, PpdError } from '../src/errors.ts';
import { DOCUMENT_SEPARATOR, SPLITS, assignSplits, type CorpusDocument, type Split } from '../src/data/corpus.ts';
import { countDocuments, writeSplitFiles, type Counts } from '../src/data/corpus-files.ts';
import {
  CODE_HELD_OUT,
  HELD_OUT_PACKAGE_BYTES,
  TRAIN_PACKAGE_BYTES,
  codeDocument,
  contentSkipReason,
  dropRepeatedLicenceHeaders,
  isCodePath,
  isPermissiveLicence,
  licenceFileOf,
  licenceOf,
  normaliseCode,
  pathSkipReason,
  sampleWithin,
  shadowedBySources,
  type SkipReason,
} from '../src/data/code-corpus.ts';
import { writeJsonAtomic } from '../src/format/atomic.ts';
import { arrayOf, crossCheck, literal, matching, object, text } from '../src/format/schema.ts';
import { readJsonWithSchema } from '../src/format/text-file.ts';
import { Progress } from '../src/report/progress.ts';

/** Packages fetched by one `npm pack` call. */
const FETCH_BATCH = 20;

/** data/code-corpus/packages.json: the pinned packages, read with the project's schema reader. */
const PinnedPackages = crossCheck(
  object({
    schema: literal('ppd-code-packages/1'),
    packages: arrayOf(
      object({
        name: text('an npm package name'),
        version: text('an exact version'),
        /** The registry's dist.integrity of the tarball (sha512, base64). */
        integrity: matching(/^sha512-[A-Za-z0-9+/]+=*$/, 'a "sha512-..." integrity string'),
      }),
      'an array of {name, version, integrity}',
    ),
  }),
  (value, fail) => {
    const names = new Set<string>();
    value.packages.forEach((pin, i) => {
      if (names.has(pin.name)) fail(['packages', i, 'name'], `must not repeat an earlier entry, got ${JSON.stringify(pin.name)}`);
      names.add(pin.name);
    });
  },
);
type Pin = z.output<typeof PinnedPackages>['packages'][number];

// ---------------------------------------------------------------------------------------------
// Fetching and reading tarballs

/** The file name `npm pack` gives a package's tarball: "@types/node" 20.1.0 -> types-node-20.1.0.tgz. */
function tarballName(pin: Pin): string {
  return `${pin.name.replace(/^@/, '').replace('/', '-')}-${pin.version}.tgz`;
}

function sha512Integrity(path: string): string {
  return `sha512-${createHash('sha512').update(readFileSync(path)).digest('base64')}`;
}

/** Fetches the tarballs not yet in `dir` with `npm pack`, which checks each against the registry's integrity. */
function fetchMissing(pins: readonly Pin[], dir: string): void {
  const missing = pins.filter((pin) => !existsSync(join(dir, tarballName(pin))));
  if (missing.length === 0) return;
  mkdirSync(dir, { recursive: true });
  const bar = new Progress('fetching (npm pack)', missing.length, 'packages');
  for (let i = 0; i < missing.length; i += FETCH_BATCH) {
    const batch = missing.slice(i, i + FETCH_BATCH);
    try {
      execFileSync('npm', ['pack', ...batch.map((p) => `${p.name}@${p.version}`), '--pack-destination', dir, '--silent'], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
    } catch (err) {
      const stderr = String((err as { stderr?: Buffer }).stderr ?? '').trim().split('\n').at(-1);
      throw new PpdError(`npm pack failed for ${batch.map((p) => `${p.name}@${p.version}`).join(' ')}: ${stderr || (err as Error).message}`);
    }
    bar.update(Math.min(missing.length, i + batch.length));
  }
  bar.stop();
}

/** The files of a package tarball by path (the tarball's top folder, usually "package/", cut off). */
function readTarball(path: string): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  try {
    list({
      file: path,
      sync: true,
      onReadEntry: (entry) => {
        if (entry.type !== 'File') {
          entry.resume();
          return;
        }
        const chunks: Buffer[] = [];
        const name = entry.path.split('/').slice(1).join('/');
        entry.on('data', (chunk: Buffer) => chunks.push(chunk));
        entry.on('end', () => files.set(name, Buffer.concat(chunks)));
      },
    });
  } catch (err) {
    throw new FormatError(path, `cannot read the tarball (${(err as Error).message})`);
  }
  return files;
}

// ---------------------------------------------------------------------------------------------
// One package: its licence and its code files

interface PackageRecord {
  name: string;
  version: string;
  integrity: string;
  /** package.json's licence, as an SPDX expression. */
  licence: string;
  /** The licence file at the package root. */
  licenceFile: string;
  /** Code files (.js, .ts, ... by name) in the tarball. */
  codeFiles: number;
  skipped: Partial<Record<SkipReason, number>>;
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

function readPackage(pin: Pin, tarball: string): { record: PackageRecord; files: { path: string; text: string }[] } {
  const files = readTarball(tarball);
  const pkgJson = files.get('package.json');
  if (!pkgJson) throw new FormatError(tarball, 'no package.json at the top of the tarball');
  let meta: Record<string, unknown>;
  try {
    meta = JSON.parse(pkgJson.toString('utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new FormatError(tarball, `package.json is not JSON (${(err as Error).message})`);
  }
  if (meta.name !== pin.name || meta.version !== pin.version) {
    throw new FormatError(tarball, `holds ${String(meta.name)}@${String(meta.version)}, not the pinned ${pin.name}@${pin.version}`);
  }
  const licence = licenceOf(meta);
  if (licence === null || !isPermissiveLicence(licence)) {
    throw new FormatError(tarball, `licence ${JSON.stringify(licence)} is not one the corpus accepts (see data/code-corpus/README.md)`);
  }
  const paths = [...files.keys()].sort();
  const licenceFile = licenceFileOf(paths);
  if (licenceFile === null) throw new FormatError(tarball, 'ships no licence file (LICENSE, LICENCE, COPYING) at its root');

  const skipped: PackageRecord['skipped'] = {};
  const skip = (reason: SkipReason) => (skipped[reason] = (skipped[reason] ?? 0) + 1);
  const codePaths = paths.filter(isCodePath);
  const shadowed = shadowedBySources(codePaths);
  const kept: { path: string; text: string }[] = [];
  for (const path of codePaths) {
    const reason = pathSkipReason(path) ?? shadowed.get(path) ?? null;
    if (reason) {
      skip(reason);
      continue;
    }
    let text: string;
    try {
      text = normaliseCode(UTF8.decode(files.get(path)!));
    } catch {
      skip('binary');
      continue;
    }
    const contentReason = text === '' ? 'empty' : contentSkipReason(text);
    if (contentReason) skip(contentReason);
    else kept.push({ path, text });
  }
  const withoutBoilerplate = dropRepeatedLicenceHeaders(kept).filter((file) => {
    if (file.text.trim() !== '') return true;
    skip('licence boilerplate only');
    return false;
  });
  const record: PackageRecord = {
    name: pin.name,
    version: pin.version,
    integrity: pin.integrity,
    licence,
    licenceFile,
    codeFiles: codePaths.length,
    skipped,
  };
  return { record, files: withoutBoilerplate.map((f) => ({ path: f.path, text: normaliseCode(f.text) })) };
}

// ---------------------------------------------------------------------------------------------

function main(): void {
  const { values } = parseArgs({
    options: {
      packages: { type: 'string', default: 'data/code-corpus/packages.json' },
      out: { type: 'string', default: 'data/code-corpus' },
      cache: { type: 'string', default: 'data/code-corpus/.cache' },
    },
  });
  const t0 = performance.now();
  const pins = readJsonWithSchema(PinnedPackages, values.packages).packages;
  const tarballs = join(values.cache, 'tarballs');
  fetchMissing(pins, tarballs);

  const records: PackageRecord[] = [];
  const docsByPackage = new Map<string, CorpusDocument[]>();
  const seenCode = new Set<string>();
  const bar = new Progress('reading packages', pins.length, 'packages');
  for (const pin of pins) {
    const tarball = join(tarballs, tarballName(pin));
    const actual = sha512Integrity(tarball);
    if (actual !== pin.integrity) throw new FormatError(tarball, `sha512 ${actual} differs from the pinned ${pin.integrity}; delete it to fetch again`);
    const { record, files } = readPackage(pin, tarball);
    const docs: CorpusDocument[] = [];
    for (const file of files) {
      // The same file in two packages (a vendored copy, a re-export) counts once, where first met.
      const hash = createHash('sha256').update(file.text, 'utf8').digest('hex');
      if (seenCode.has(hash)) {
        record.skipped.duplicate = (record.skipped.duplicate ?? 0) + 1;
        continue;
      }
      seenCode.add(hash);
      docs.push(codeDocument(pin.name, file.path, file.text));
    }
    records.push(record);
    docsByPackage.set(pin.name, docs);
    bar.tick();
  }
  bar.stop();

  // Whole packages go to one split, each within its split's budget: a held-out package keeps a
  // small sample of its files (the rest is in no split, so training sees none of it), a large
  // training package a sample of TRAIN_PACKAGE_BYTES.
  const all = [...docsByPackage.values()].flat();
  const bySplit = assignSplits(all, { groupOf: (doc) => doc.source, heldOut: CODE_HELD_OUT });
  const budget: Record<Split, number> = { train: TRAIN_PACKAGE_BYTES, valid: HELD_OUT_PACKAGE_BYTES, test: HELD_OUT_PACKAGE_BYTES };
  for (const split of SPLITS) {
    bySplit[split] = [...docsByPackage.keys()].flatMap((name) => sampleWithin(bySplit[split].filter((doc) => doc.source === name), budget[split]));
  }
  const splitOfPackage = new Map<string, Split>();
  for (const split of SPLITS) for (const doc of bySplit[split]) splitOfPackage.set(doc.source, split);

  const files = writeSplitFiles(values.out, bySplit);
  const manifest = {
    schema: 'ppd-code-corpus/1',
    builtBy: 'scripts/build-code-corpus.ts',
    documentSeparator: DOCUMENT_SEPARATOR,
    documentHeader: 'each document opens with the line "// <package>/<path>"',
    splitRule:
      'by package: u = first 4 bytes of sha256(package name, UTF-8) as a big-endian uint32 / 2^32; ' +
      `valid if u < ${CODE_HELD_OUT.valid}, test if u < ${CODE_HELD_OUT.valid + CODE_HELD_OUT.test}, else train; ` +
      `each package keeps the files that fit in ${TRAIN_PACKAGE_BYTES} bytes (train) or ${HELD_OUT_PACKAGE_BYTES} bytes (valid, test) in sha256(document id) order; the rest is in no split`,
    packages: records.map((record) => {
      const docs = docsByPackage.get(record.name)!;
      const split = splitOfPackage.get(record.name) ?? null;
      const inSplit = split === null ? [] : bySplit[split].filter((doc) => doc.source === record.name);
      return { ...record, split, kept: countDocuments(docs), inSplit: countDocuments(inSplit) };
    }),
    files,
  };
  writeJsonAtomic(join(values.out, 'manifest.json'), manifest);

  const skipped: Record<string, number> = {};
  for (const record of records) for (const [reason, n] of Object.entries(record.skipped)) skipped[reason] = (skipped[reason] ?? 0) + n!;
  const mb = (c: Counts) => `${(c.bytes / 1e6).toFixed(2)} MB`;
  console.log(`${records.length} packages, ${records.reduce((n, r) => n + r.codeFiles, 0)} code files; skipped: ${JSON.stringify(skipped)}`);
  for (const split of SPLITS) {
    const f = files[split];
    const packages = manifest.packages.filter((p) => p.split === split).length;
    console.log(`${join(values.out, f.file).padEnd(30)} ${String(f.documents).padStart(6)} files from ${packages} packages, ${mb(f)}`);
  }
  console.log(`built in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
}

try {
  main();
} catch (err) {
  exitOnPpdError(err);
}
