/**
 * Context lookup (src/ppd/lookup.ts): what it proposes on hand-written sequences. Its use in
 * decoding (greedy identity, kept distribution) is tested in ppd-decode.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InputError } from '../src/errors.ts';
import { ContextLookup } from '../src/ppd/lookup.ts';

function lookupOf(tokens: number[], maxNgram?: number): ContextLookup {
  const lookup = new ContextLookup(maxNgram);
  lookup.push(...tokens);
  return lookup;
}

test('proposes what followed the most recent earlier occurrence of the longest recurring suffix', () => {
  // ... 1 2 3 | 9 9 | 1 2 3 [4] 5 6 | 7 ... then 2 3 + next 4: "2 3 4" recurs, followed by 5 6 7.
  const lookup = lookupOf([1, 2, 3, 9, 9, 1, 2, 3, 4, 5, 6, 7, 8, 2, 3]);
  assert.deepEqual(lookup.propose(4, 3), [5, 6, 7]);
  // With next = 9 the suffix "2 3 9" occurred at 1..3, followed by 9 1: the longest recurring
  // suffix wins over the more recent occurrence of "9" alone (index 4, followed by 1).
  assert.deepEqual(lookup.propose(9, 2), [9, 1]);
});

test('a recurring suffix of 1 token is enough; no recurrence proposes nothing', () => {
  const lookup = lookupOf([5, 6, 7]);
  assert.deepEqual(lookup.propose(6, 4), [7, 6, 7, 6]); // 6 → 7, then the period-2 loop goes on
  assert.deepEqual(lookup.propose(8, 4), []);
  assert.deepEqual(lookupOf([]).propose(1, 3), []);
  assert.deepEqual(lookup.propose(6, 0), []);
});

test('a loop shorter than the proposal is continued with its period', () => {
  const lookup = lookupOf([1, 7, 8, 9, 7, 8]);
  // Suffix "7 8 9" recurs at 1..3 with period 3: 7 8 9 7 8 ...
  assert.deepEqual(lookup.propose(9, 5), [7, 8, 9, 7, 8]);
});

test('the longest suffix tried is maxNgram; truncate forgets tokens', () => {
  // With maxNgram 1 only the last token matters: 3 last occurred at index 4 (followed by 1).
  const seq = [1, 2, 3, 0, 3, 1, 2];
  assert.deepEqual(lookupOf(seq, 1).propose(3, 1), [1]);
  // With 3, "1 2 3" recurs at 0..2, followed by 0.
  assert.deepEqual(lookupOf(seq, 3).propose(3, 1), [0]);
  const lookup = lookupOf(seq, 3);
  lookup.truncate(3);
  assert.equal(lookup.length, 3);
  assert.deepEqual(lookup.propose(1, 2), [2, 3]);
  assert.throws(() => lookup.truncate(4), InputError);
  assert.throws(() => new ContextLookup(0), InputError);
});
