/**
 * ONNX Runtime, configured once for ppd: CPU execution provider, intra-op threads = cores,
 * full graph optimisation. Everything else in ppd talks to ORT through this file, so changing
 * the provider or thread policy is a one-file change.
 */
import ort from 'onnxruntime-node';
import { availableParallelism } from 'node:os';

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
