/**
 * Training checkpoints: everything a run needs to continue bit for bit as if uninterrupted —
 * parameters, AdamW moments and step, the data sampler's RNG state, and the run's settings.
 *
 * Layout under the run folder: `checkpoint-<step>/` holding `params.safetensors`,
 * `optimizer.safetensors` (m.<name>, v.<name>) and `state.json`, plus `latest.json` naming the
 * newest complete checkpoint. A checkpoint folder is written completely before `latest.json`
 * (itself written atomically) points at it, and older folders are removed only afterwards, so a
 * crash at any moment leaves a loadable checkpoint.
 */
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeJsonAtomic } from '../format/atomic.ts';
import { looseObject, text } from '../format/schema.ts';
import { readJsonObject, readJsonWithSchema } from '../format/text-file.ts';
import { openSafetensors } from '../format/file-io.ts';
import { writeSafetensors } from '../format/safetensors-write.ts';
import type { AdamW } from './optimizer.ts';

const LATEST = 'latest.json';

export interface TrainingState {
  params: Map<string, Float32Array>;
  /** Shapes of the parameters, by name. */
  shapes: Map<string, number[]>;
  optimizer: AdamW;
  /** Anything else the loop needs (step, RNG state, settings, loss history), as JSON. */
  state: Record<string, unknown>;
}

function writeTensors(path: string, tensors: Map<string, Float32Array>, shapes: Map<string, number[]>, prefix = ''): void {
  writeSafetensors(
    path,
    [...tensors].map(([name, data]) => ({ name: prefix + name, dtype: 'F32' as const, shape: shapes.get(name)!, data: () => data })),
  );
}

export function saveCheckpoint(runDir: string, step: number, t: TrainingState): string {
  mkdirSync(runDir, { recursive: true });
  const name = `checkpoint-${step}`;
  const dir = join(runDir, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir);
  writeTensors(join(dir, 'params.safetensors'), t.params, t.shapes);
  const moments = new Map<string, Float32Array>();
  const momentShapes = new Map<string, number[]>();
  for (const [kind, store] of [['m.', t.optimizer.m], ['v.', t.optimizer.v]] as const) {
    for (const [param, data] of store) {
      moments.set(kind + param, data);
      momentShapes.set(kind + param, t.shapes.get(param)!);
    }
  }
  writeTensors(join(dir, 'optimizer.safetensors'), moments, momentShapes);
  writeJsonAtomic(join(dir, 'state.json'), { ...t.state, optimizerStep: t.optimizer.step });
  writeJsonAtomic(join(runDir, LATEST), { checkpoint: name, step });
  for (const old of readdirSync(runDir)) {
    if (old.startsWith('checkpoint-') && old !== name) rmSync(join(runDir, old), { recursive: true, force: true });
  }
  return dir;
}

/** latest.json: which checkpoint folder is the newest, and its step. */
const latestFile = looseObject({ checkpoint: text('the name of a checkpoint folder') });

/** Loads the newest checkpoint of `runDir` into `optimizer`; undefined when there is none. */
export function loadCheckpoint(runDir: string, optimizer: AdamW): Omit<TrainingState, 'optimizer'> | undefined {
  const latestPath = join(runDir, LATEST);
  if (!existsSync(latestPath)) return undefined;
  const latest = readJsonWithSchema(latestFile, latestPath);
  const dir = join(runDir, latest.checkpoint);
  const params = new Map<string, Float32Array>();
  const shapes = new Map<string, number[]>();
  const paramFile = openSafetensors(join(dir, 'params.safetensors'));
  for (const t of paramFile.list()) {
    params.set(t.name, paramFile.readF32(t.name));
    shapes.set(t.name, t.shape);
  }
  paramFile.close();
  const momentFile = openSafetensors(join(dir, 'optimizer.safetensors'));
  for (const t of momentFile.list()) {
    const store = t.name.startsWith('m.') ? optimizer.m : optimizer.v;
    store.set(t.name.slice(2), momentFile.readF32(t.name));
  }
  momentFile.close();
  const state = readJsonObject(join(dir, 'state.json'));
  optimizer.step = Number(state.optimizerStep ?? 0);
  return { params, shapes, state };
}
