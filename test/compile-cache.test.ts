/**
 * The compiled-graph cache (src/runtime/compile.ts) when several processes compile the same graph
 * at once: the first to publish its folder wins, and no one removes a published folder.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { compileGraph, graphKey } from '../src/runtime/compile.ts';
import type { GraphSpec } from '../src/runtime/session.ts';

const bytes = (text: string) => new TextEncoder().encode(text);

test('a graph another process published while this one compiled is kept, not replaced; a leftover without its model is', () => {
  const cacheDir = mkdtempSync(join(tmpdir(), 'ppd-compile-'));
  try {
    const identity = 'the same graph';
    const finalDir = join(cacheDir, graphKey({ identity, build: () => bytes('') }));
    const racing: GraphSpec = {
      identity,
      build: () => {
        // Another process finishes the same graph first and may already be loading it.
        mkdirSync(finalDir);
        writeFileSync(join(finalDir, 'model.onnx'), 'theirs');
        return bytes('ours');
      },
    };
    const { path } = compileGraph(racing, { cacheDir });
    assert.equal(path, join(finalDir, 'model.onnx'));
    assert.equal(readFileSync(path, 'utf8'), 'theirs', 'the published folder stays as it was');
    assert.deepEqual(readdirSync(cacheDir), [basename(finalDir)], 'no staging folder is left behind');

    // A folder without its model (removed by hand) is no compilation: it is replaced.
    rmSync(path);
    compileGraph({ identity, build: () => bytes('ours') }, { cacheDir });
    assert.equal(readFileSync(path, 'utf8'), 'ours');
  } finally {
    rmSync(cacheDir, { recursive: true, force: true });
  }
});
