/**
 * What the model layer needs from an ONNX runtime, without naming one: a graph to compile (or
 * find compiled), and a session that runs it. ONNX Runtime's Node binding implements it in
 * ort.ts (graphs cached on disk), onnxruntime-web in ort-web.ts (graphs cached in the browser's
 * Cache Storage), so the model and the decoders above it are the same code in Node and in a page.
 */
import type { ExternalDataSink } from '../graph/builder.ts';

/** A graph input: a flat typed array and its dims. */
export type Feed =
  | { type: 'float32'; data: Float32Array; dims: readonly number[] }
  | { type: 'int64'; data: BigInt64Array; dims: readonly number[] };

export interface ModelSession {
  /** One run; every output comes back as float32 data by name (ppd's inference graphs output float32 only). */
  run(feeds: Record<string, Feed>): Promise<Record<string, Float32Array>>;
  release(): Promise<void>;
}

/** A graph to open, and what identifies it for a cache of compiled graphs. */
export interface GraphSpec {
  /**
   * Everything the graph's bytes depend on (builder version, variant, config, the checkpoint's
   * files and their versions), as text: two specs with the same identity build the same graph.
   */
  identity: string;
  /** Writes the graph: large tensors go to `external`; returns the serialised ModelProto. */
  build(external: ExternalDataSink): Uint8Array;
}

export interface Runtime {
  /** What runs the graphs, for reports and the page: e.g. "onnxruntime-node 1.30.0, cpu, 2 threads". */
  readonly description: string;
  /** A session on the graph; built only when no compiled copy is kept. */
  openGraph(graph: GraphSpec): Promise<ModelSession>;
}
