/**
 * GraphBuilder's finished model: graph outputs named on their producing node where they can be,
 * an Identity where they cannot, and the same values either way. Unit layer (ORT runs the graph).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import { GraphBuilder } from '../src/graph/builder.ts';
import { createSession, OrtTensor } from '../src/runtime/ort.ts';

test('graph outputs are their producing nodes renamed, with an Identity only for inputs and second names', async () => {
  const g = new GraphBuilder('outputs');
  const x = g.input('x', 'float32', [3]);
  const doubled = g.op('Mul', [x, g.scalar(2)]);
  g.output(doubled, 'a');
  g.output(doubled, 'b'); // the same value under a second name
  g.output(x, 'c'); // a graph input
  g.output(g.op('Add', [doubled, g.scalar(1)]), 'z'); // consumes the renamed value
  const model = g.finish();
  const nodes = onnxProto.onnx.ModelProto.decode(model).graph!.node!;
  const identities = nodes.filter((n) => n.opType === 'Identity').map((n) => n.output![0]);
  assert.deepEqual(identities.sort(), ['b', 'c']);
  assert.ok(nodes.some((n) => n.opType === 'Mul' && n.output![0] === 'a'));
  const dir = mkdtempSync(join(tmpdir(), 'ppd-builder-'));
  try {
    writeFileSync(join(dir, 'model.onnx'), model);
    const session = await createSession(join(dir, 'model.onnx'), { threads: 1 });
    const out = await session.run({ x: new OrtTensor('float32', Float32Array.from([1, -2, 0.5]), [3]) });
    assert.deepEqual([...(out.a!.data as Float32Array)], [2, -4, 1]);
    assert.deepEqual([...(out.b!.data as Float32Array)], [2, -4, 1]);
    assert.deepEqual([...(out.c!.data as Float32Array)], [1, -2, 0.5]);
    assert.deepEqual([...(out.z!.data as Float32Array)], [3, -3, 2]);
    await session.release();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
