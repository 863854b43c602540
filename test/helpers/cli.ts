/**
 * Running the real `ppd` command line from tests: a spawn that never rejects, and the
 * user-error contract (exit 1, nothing on stdout, one `error:` line naming every culprit, no
 * stack trace). Compiled graphs go to the PPD_CACHE_DIR the caller names.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `ppd ...args` from the repo root with PPD_CACHE_DIR = `cacheDir`. */
export function runPpd(cacheDir: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', ...args],
      { cwd: REPO, env: { ...process.env, PPD_CACHE_DIR: cacheDir }, maxBuffer: 16 << 20 },
      (error, stdout, stderr) => resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr }),
    );
  });
}

/** Runs and asserts success. */
export async function runPpdOk(cacheDir: string, args: string[]): Promise<Run> {
  const run = await runPpd(cacheDir, args);
  assert.equal(run.code, 0, `ppd ${args.join(' ')} failed:\n${run.stderr}`);
  return run;
}

export async function assertUserError(cacheDir: string, args: string[], culprits: string[]): Promise<void> {
  const { code, stdout, stderr } = await runPpd(cacheDir, args);
  const what = `ppd ${args.join(' ')}`;
  assert.equal(code, 1, `${what}: exit code (stderr: ${stderr})`);
  assert.equal(stdout, '', `${what}: stdout`);
  assert.doesNotMatch(stderr, /\n {4}at /, `${what}: stack trace on stderr:\n${stderr}`);
  assert.match(stderr, /^error: [^\n]+\n$/, `${what}: stderr must be one "error:" line, got:\n${stderr}`);
  for (const culprit of culprits) {
    assert.ok(stderr.includes(culprit), `${what}: error should name ${JSON.stringify(culprit)}, got: ${stderr.trim()}`);
  }
}
