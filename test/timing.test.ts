/**
 * The timing helpers shared by `ppd calibrate` and the benchmarks (report/timing.ts): the spread
 * of samples, and timeInRounds' order (groups in turn, calls alternating direction, warm-up
 * rounds dropped).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { spread, timeInRounds } from '../src/report/timing.ts';

test('spread: median of odd and even counts, min, max; no samples is an error', () => {
  assert.deepEqual(spread([3, 1, 2]), { medianMs: 2, minMs: 1, maxMs: 3, samples: 3 });
  assert.equal(spread([4, 1, 3, 2]).medianMs, 2.5);
  assert.throws(() => spread([]), /no samples/);
});

test('timeInRounds: every call once per round, alternating direction, in the given group order; warm-up rounds not kept', async () => {
  const log: string[] = [];
  const call = (name: string) => async () => void log.push(name);
  const samples = await timeInRounds([[call('a0'), call('a1')], [call('b0'), call('b1')]], {
    warmupRounds: 1,
    repeats: 2,
    groupOrder: (round) => (round % 2 === 0 ? [0, 1] : [1, 0]),
    beforeGroup: async (g) => void log.push(`before ${g}`),
  });
  assert.deepEqual(log, [
    'before 0', 'a0', 'a1', 'before 1', 'b0', 'b1', // round 0 (warm-up)
    'before 1', 'b1', 'b0', 'before 0', 'a1', 'a0', // round 1: other group first, calls backwards
    'before 0', 'a0', 'a1', 'before 1', 'b0', 'b1',
  ]);
  assert.deepEqual(samples.map((group) => group.map((s) => s.length)), [[2, 2], [2, 2]]);
  log.length = 0;
  await timeInRounds([[call('a0'), call('a1')]], { warmupRounds: 0, repeats: 2, alternate: false });
  assert.deepEqual(log, ['a0', 'a1', 'a0', 'a1']);
  assert.ok(samples.flat(2).every((ms) => ms >= 0));
});
