/**
 * ONNX Runtime on Node, configured once for ppd: CPU execution provider, intra-op threads =
 * cores, full graph optimisation. Everything in ppd that runs on Node talks to ORT through this
 * file, so changing the provider or thread policy is a one-file change. `nodeRuntime` is the
 * Runtime (session.ts) the model layer is given on Node; ort-web.ts is its browser twin.
 */
import ort from 'onnxruntime-node';
import { availableParallelism } from 'node:os';
import { compileGraph, type CompileOptions } from './compile.ts';
import type { Feed, ModelSession, Runtime } from './session.ts';

export type OrtSession = ort.InferenceSession;
export type OrtTensor = ort.Tensor;
export const OrtTensor = ort.Tensor;

export interface RuntimeOptions {
  /** Intra-op threads; defaults to the number of cores. */
  threads?: number;
  /**
   * Profile every run: ORT writes a Chrome-trace JSON (one event per node run, with its op type)
   * to `<profilePrefix>_<date>.json` when the session is released. Costs a little time per node.
   */
  profilePrefix?: string;
}

export function defaultThreads(): number {
  const fromEnv = Number(process.env.PPD_THREADS);
  return Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : availableParallelism();
}

export async function createSession(modelPath: string, options: RuntimeOptions = {}): Promise<OrtSession> {
  return ort.InferenceSession.create(modelPath, {
    executionProviders: ['cpu'],
    intraOpNumThreads: options.threads ?? defaultThreads(),
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    ...(options.profilePrefix === undefined ? {} : { enableProfiling: true, profileFilePrefix: options.profilePrefix }),
  });
}

export const ortVersion = (): string => ort.env.versions.node ?? 'unknown';

/** An ORT session as the model layer uses it: typed-array feeds in, float32 outputs by name. */
export function modelSession(session: OrtSession): ModelSession {
  return {
    async run(feeds: Record<string, Feed>): Promise<Record<string, Float32Array>> {
      const tensors: Record<string, OrtTensor> = {};
      for (const [name, feed] of Object.entries(feeds)) tensors[name] = new OrtTensor(feed.type, feed.data, feed.dims);
      const out = await session.run(tensors);
      return Object.fromEntries(Object.entries(out).map(([name, t]) => [name, float32Data(name, t)]));
    },
    release: () => session.release(),
  };
}

function float32Data(name: string, tensor: OrtTensor): Float32Array {
  if (tensor.type !== 'float32') throw new Error(`graph output ${name} is ${tensor.type}, expected float32`);
  return tensor.data as Float32Array;
}

/** ONNX Runtime on Node as the model layer's Runtime: graphs compiled into the disk cache (compile.ts). */
export function nodeRuntime(options: RuntimeOptions & CompileOptions = {}): Runtime {
  const threads = options.threads ?? defaultThreads();
  return {
    description: `onnxruntime-node ${ortVersion()}, cpu, ${threads} thread${threads === 1 ? '' : 's'}`,
    async openGraph(graph) {
      const compiled = compileGraph(graph, options);
      try {
        return modelSession(await createSession(compiled.path, { ...options, threads }));
      } finally {
        compiled.dispose();
      }
    },
  };
}
