/**
 * The layering check itself (.dependency-cruiser.cjs, run by `npm test` before the tests): on a
 * small fixture tree it reports an import from a low layer into a higher one, a cycle between two
 * folders, and a folder missing from the layer table; on a fixture that follows the layers it
 * reports nothing. (That src/ itself passes is the lint step of `npm test`.)
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';

const REPO = join(import.meta.dirname, '..');
const work = mkdtempSync(join(tmpdir(), 'ppd-layering-'));
after(() => rmSync(work, { recursive: true, force: true }));

/** Runs the project's dependency check on a tree of `files` (path → source); returns its report. */
function check(name: string, files: Record<string, string>): { status: number | null; report: string } {
  const root = join(work, name);
  for (const [path, source] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), source);
  }
  const run = spawnSync(join(REPO, 'node_modules', '.bin', 'depcruise'), ['--config', join(REPO, '.dependency-cruiser.cjs'), '--output-type', 'err', 'src'], {
    cwd: root,
    encoding: 'utf8',
  });
  return { status: run.status, report: run.stdout + run.stderr };
}

test('an upward import, a cycle between folders and an unknown folder each fail the check, naming the rule', () => {
  const { status, report } = check('bad', {
    'src/format/bytes.ts': "import { Config } from '../model/config.ts';\nexport const size = (c: Config) => c.n;\n",
    'src/model/config.ts': "import { size } from '../format/bytes.ts';\nexport class Config { n = 1; s = size; }\n",
    'src/gadgets/thing.ts': "import { Config } from '../model/config.ts';\nexport const thing = new Config();\n",
  });
  assert.notEqual(status, 0, report);
  assert.match(report, /layer-\d+-imports-downward: src\/format\/bytes\.ts → src\/model\/config\.ts/);
  assert.match(report, /no-folder-cycles/);
  assert.match(report, /folder-in-layer-table: src\/gadgets\/thing\.ts/);
});

test('a tree that imports only downward passes', () => {
  const { status, report } = check('good', {
    'src/format/bytes.ts': 'export const size = 4;\n',
    'src/model/config.ts': "import { size } from '../format/bytes.ts';\nexport const n = size;\n",
    'src/cli/main.ts': "import { n } from '../model/config.ts';\nconsole.log(n);\n",
  });
  assert.equal(status, 0, report);
});
