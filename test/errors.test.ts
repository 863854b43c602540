/**
 * How every command-line program ends on an error (errors.ts exitOnPpdError, shared by the `ppd`
 * CLI, scripts/ and the benchmarks): bad input is one `error:` line and exit code 1, a bug keeps
 * its stack. Each case runs in a child process, since the helper exits.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..');
const work = mkdtempSync(join(tmpdir(), 'ppd-errors-'));
after(() => rmSync(work, { recursive: true, force: true }));

/** Runs a program that throws `thrown` (a source expression) into exitOnPpdError. */
function end(name: string, thrown: string) {
  const file = join(work, `${name}.ts`);
  const errors = join(ROOT, 'src', 'errors.ts');
  writeFileSync(file, `import { exitOnPpdError, FormatError } from ${JSON.stringify(errors)};\ntry { throw ${thrown}; } catch (e) { exitOnPpdError(e); }\nconsole.log('not reached');\n`);
  return spawnSync(process.execPath, ['--import', 'tsx', file], { cwd: ROOT, encoding: 'utf8' });
}

test('a PpdError ends as exactly one error line and exit code 1', () => {
  const run = end('user', "new FormatError('m/config.json', 'field \"hidden_size\" must be a positive integer')");
  assert.equal(run.status, 1);
  assert.equal(run.stderr, 'error: m/config.json: field "hidden_size" must be a positive integer\n');
  assert.equal(run.stdout, '');
});

test('anything else is a bug: rethrown with its stack, not dressed as bad input', () => {
  const run = end('bug', "new TypeError('boom')");
  assert.notEqual(run.status, 0);
  assert.match(run.stderr, /TypeError: boom\n\s+at /);
  assert.doesNotMatch(run.stderr, /^error: /m);
  assert.equal(run.stdout, '');
});

test('a script (count-tokens) reports a missing tokenizer as one error line naming the file', () => {
  const missing = join(work, 'no-such-corpus.txt');
  const run = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/count-tokens.ts', '--tokenizer', join(work, 'no-tokenizer'), missing], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(run.status, 1, run.stderr);
  assert.match(run.stderr, /^error: .*no-tokenizer\/tokenizer\.json/);
  assert.equal(run.stderr.trimEnd().split('\n').length, 1, run.stderr);
});
