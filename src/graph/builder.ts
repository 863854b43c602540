/**
 * GraphBuilder: a small, readable way to write an ONNX graph in TypeScript.
 *
 * Each `op` call adds one node and returns the name of its output, so model code reads like the
 * math (`const y = g.op('MatMul', [x, w])`). Large weights are streamed to external data (a file, or
 * memory in a browser) as they are added (ONNX protobufs cannot exceed 2 GB, and ppd never holds
 * a whole checkpoint in memory); small constants stay inside the model. This file knows ONNX, not LLaMA.
 *
 * The builder also remembers what it built: every node (in order, which is a topological order)
 * and, for every value, its element type and static shape as far as `shapes.ts` can infer them.
 * `autodiff.ts` walks that record to add gradient nodes. The graph has one float type
 * (`float32`, or `float64` for gradient checks): float constants are stored in it.
 */
import onnxProto from 'onnx-proto';
import { inferOutputs, type AttrValue, type Dim, type ElemType, type FloatType, type ValueInfo } from './shapes.ts';

const { onnx } = onnxProto;
type ModelProto = onnxProto.onnx.IModelProto;
type NodeProto = onnxProto.onnx.INodeProto;
type TensorProto = onnxProto.onnx.ITensorProto;
type ValueInfoProto = onnxProto.onnx.IValueInfoProto;

/** A dimension: a fixed size, or a symbolic name such as 'T' (rows) or 'P' (past length). */
// The value and attribute types are shapes.ts's (its rules read them); re-exported for callers.
export type { AttrValue, Dim, ElemType, FloatType, ValueInfo } from './shapes.ts';

/** ONNX TensorProto.DataType codes, as used by Cast's `to` attribute. */
export const DATA_TYPE: Record<ElemType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  float64: onnx.TensorProto.DataType.DOUBLE,
  int64: onnx.TensorProto.DataType.INT64,
  bool: onnx.TensorProto.DataType.BOOL,
  uint8: onnx.TensorProto.DataType.UINT8,
};

/** ONNX Runtime's contrib operators (MatMulNBits: matrix products with block-quantized weights). */
export const MS_DOMAIN = 'com.microsoft';
/** Operator-set version of each non-default domain a graph may use (the model must import it). */
const DOMAIN_OPSETS: Record<string, number> = { [MS_DOMAIN]: 1 };

export const isFloat = (type: ElemType | undefined): type is FloatType => type === 'float32' || type === 'float64';

/** A graph that cannot be built or differentiated as asked; the message names the node and value. */
export class GraphError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GraphError';
  }
}

/** One recorded node, as `op` received it. */
export interface GraphNode {
  readonly opType: string;
  readonly name: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly attrs: Readonly<Record<string, AttrValue>>;
  readonly domain: string;
}

export interface GraphOptions {
  opset?: number;
  /** The type of float inputs' constants (`scalar`, `floats`, float `initializer`s). */
  float?: FloatType;
}

/** Tensors at least this large go to the external-data file instead of the protobuf. */
const EXTERNAL_MIN_BYTES = 1024;
/** External tensors start on page boundaries so ONNX Runtime may map them directly. */
const EXTERNAL_ALIGN = 4096;
/** Constants up to this many elements keep their values in the record (shapes, axes, exponents). */
const KEEP_VALUES_MAX = 64;

/**
 * Where a graph's large tensors go: ONNX external data, one blob the model names by `location`
 * (a file beside the model file on Node: external-file.ts; memory in a browser: memorySink).
 * The builder appends tensors in order and pads them itself.
 */
export interface ExternalDataSink {
  /** The blob's file name, as the model refers to it. */
  readonly location: string;
  append(bytes: Uint8Array): void;
  /** Called once, when the graph is finished: flush, close. */
  close(): void;
}

/** An ExternalDataSink that keeps the bytes in memory; `bytes()` after close. */
export function memorySink(location: string): ExternalDataSink & { bytes(): Uint8Array } {
  const chunks: Uint8Array[] = [];
  let joined: Uint8Array | undefined;
  return {
    location,
    append: (bytes) => void chunks.push(bytes), // kept, not copied: the builder hands over fresh arrays
    close: () => {},
    bytes() {
      if (!joined) {
        joined = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
        let at = 0;
        for (const c of chunks) {
          joined.set(c, at);
          at += c.length;
        }
        chunks.length = 0;
      }
      return joined;
    },
  };
}

/** Pads the sink to EXTERNAL_ALIGN and appends `bytes`; returns where they landed. */
class ExternalData {
  private offset = 0;
  constructor(readonly sink: ExternalDataSink) {}
  append(bytes: Uint8Array): { offset: number; length: number } {
    const padding = (EXTERNAL_ALIGN - (this.offset % EXTERNAL_ALIGN)) % EXTERNAL_ALIGN;
    if (padding > 0) this.sink.append(new Uint8Array(padding));
    const start = this.offset + padding;
    this.sink.append(bytes);
    this.offset = start + bytes.length;
    return { offset: start, length: bytes.length };
  }
}

function attribute(name: string, value: AttrValue): onnxProto.onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof value === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(value) };
  if (typeof value === 'number') return { name, type: T.INT, i: value };
  if (Array.isArray(value)) return { name, type: T.INTS, ints: value };
  if ('floats' in value) return { name, type: T.FLOATS, floats: value.floats };
  return { name, type: T.FLOAT, f: value.float };
}

function valueInfo(name: string, type: ElemType, dims: Dim[]): ValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: DATA_TYPE[type],
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function bytesOf(data: Float32Array | Float64Array | BigInt64Array | Uint8Array): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

const formatShape = (dims: readonly Dim[] | undefined) => (dims ? `[${dims.join(', ')}]` : 'unknown');

export class GraphBuilder {
  readonly opset: number;
  /** The graph's float type: write `g.input('x', g.float, dims)` to follow it. */
  readonly float: FloatType;
  private nodeList: GraphNode[] = [];
  private inputs: ValueInfoProto[] = [];
  private outputs: ValueInfoProto[] = [];
  private initializers: TensorProto[] = [];
  private values = new Map<string, ValueInfo>();
  private constants = new Map<string, number[]>();
  private counter = 0;
  private external: ExternalData | undefined;

  /**
   * @param external where large weights are written (absent: everything inside the model); a
   *   model file must later be saved beside its external-data file, as ONNX names it relatively.
   */
  constructor(private readonly name: string, external?: ExternalDataSink, options: GraphOptions = {}) {
    this.opset = options.opset ?? 18;
    this.float = options.float ?? 'float32';
    if (external) this.external = new ExternalData(external);
  }

  input(name: string, type: ElemType, dims: Dim[]): string {
    this.define(name, { type, shape: dims });
    this.inputs.push(valueInfo(name, type, dims));
    return name;
  }

  /**
   * Marks an existing value as a graph output, renaming it through an Identity node. Type and
   * dims default to what the builder inferred for `value`.
   */
  output(value: string, name: string, type?: ElemType, dims?: Dim[]): void {
    const known = this.info(value);
    const outType = type ?? known.type;
    const outDims = dims ?? known.shape;
    if (!outType || !outDims) {
      throw new GraphError(`output ${name}: type or shape of '${value}' is unknown; pass them explicitly`);
    }
    this.record({ opType: 'Identity', name: `out_${name}`, inputs: [value], outputs: [name], attrs: {}, domain: '' });
    this.define(name, { type: outType, shape: outDims });
    this.outputs.push(valueInfo(name, outType, outDims));
  }

  /**
   * A tensor of fixed values; large ones are written to the external-data file. Float data is
   * stored in the graph's float type whatever array it comes in; a Uint8Array is uint8 (the
   * packed integers of a block-quantized weight).
   */
  initializer(name: string, data: Float32Array | Float64Array | BigInt64Array | Uint8Array, dims: number[]): string {
    const type: ElemType = data instanceof BigInt64Array ? 'int64' : data instanceof Uint8Array ? 'uint8' : this.float;
    const stored = data instanceof BigInt64Array || data instanceof Uint8Array ? data : this.asFloat(data);
    const bytes = bytesOf(stored);
    const tensor: TensorProto = { name, dims, dataType: DATA_TYPE[type] };
    if (this.external && bytes.length >= EXTERNAL_MIN_BYTES) {
      const { offset, length } = this.external.append(bytes);
      tensor.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
      tensor.externalData = [
        { key: 'location', value: this.external.sink.location },
        { key: 'offset', value: String(offset) },
        { key: 'length', value: String(length) },
      ];
    } else {
      tensor.rawData = bytes.slice();
    }
    this.define(name, { type, shape: dims });
    if (data.length <= KEEP_VALUES_MAX) this.constants.set(name, Array.from(data, Number));
    this.initializers.push(tensor);
    return name;
  }

  /** A small int64 constant such as a shape or an axis list. */
  ints(values: number[]): string {
    return this.initializer(this.fresh('ints'), BigInt64Array.from(values.map(BigInt)), [values.length]);
  }

  /** A small float constant in the graph's float type, shape `dims` (default [values.length]). */
  floats(values: number[], dims: number[] = [values.length]): string {
    return this.initializer(this.fresh('floats'), Float64Array.from(values), dims);
  }

  /** A float scalar constant (shape [], broadcasts everywhere). */
  scalar(value: number): string {
    return this.initializer(this.fresh('scalar'), Float64Array.of(value), []);
  }

  /** Adds one node and returns its single output's name. */
  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, domain?: string): string {
    return this.opMulti(opType, inputs, 1, attrs, domain)[0]!;
  }

  /** Adds one node with `outputCount` outputs and returns their names. */
  opMulti(opType: string, inputs: string[], outputCount: number, attrs: Record<string, AttrValue> = {}, domain?: string): string[] {
    if (domain && DOMAIN_OPSETS[domain] === undefined) throw new GraphError(`${opType}: unknown operator domain '${domain}'`);
    const name = this.fresh(opType);
    const outputs = Array.from({ length: outputCount }, (_, i) => `${name}_out${i}`);
    const known = inputs.map((input) => (input === '' ? undefined : { ...this.info(input), value: this.constants.get(input) }));
    let inferred: ValueInfo[];
    try {
      inferred = domain ? [] : inferOutputs(opType, known, attrs, outputCount);
    } catch (e) {
      const shapes = known.map((k) => formatShape(k?.shape)).join(', ');
      throw new GraphError(`${opType} (${name}) on ${shapes}: ${(e as Error).message}`);
    }
    outputs.forEach((output, i) => this.define(output, inferred[i] ?? {}));
    this.record({ opType, name, inputs, outputs, attrs, domain: domain ?? '' });
    return outputs;
  }

  /** Every node added so far, in the order added (a topological order). */
  get nodes(): readonly GraphNode[] {
    return this.nodeList;
  }

  /** Element type and static shape of a value; either is undefined where it could not be inferred. */
  /** Whether a value of this name exists (an input, initializer or node output). */
  has(value: string): boolean {
    return this.values.has(value);
  }

  info(value: string): ValueInfo {
    const info = this.values.get(value);
    if (!info) throw new GraphError(`'${value}' is not a value of graph ${this.name}`);
    return info;
  }

  shapeOf(value: string): Dim[] | undefined {
    return this.info(value).shape;
  }

  typeOf(value: string): ElemType | undefined {
    return this.info(value).type;
  }

  /** The contents of a small constant (an `ints`, `floats`, `scalar` or small initializer). */
  constantOf(value: string): number[] | undefined {
    return this.constants.get(value);
  }

  /** Finishes the external-data file (if any) and returns the serialised ModelProto. */
  finish(): Uint8Array {
    this.external?.sink.close();
    this.external = undefined;
    const aliases = this.outputAliases();
    const named = (value: string) => aliases.get(value) ?? value;
    const node: NodeProto[] = this.nodeList.filter((n) => !(n.opType === 'Identity' && aliases.get(n.inputs[0]!) === n.outputs[0])).map((n) => ({
      opType: n.opType,
      name: n.name,
      input: n.inputs.map(named),
      output: n.outputs.map(named),
      domain: n.domain,
      attribute: Object.entries(n.attrs).map(([key, value]) => attribute(key, value)),
    }));
    const domains = [...new Set(this.nodeList.map((n) => n.domain).filter((d) => d !== ''))];
    const model: ModelProto = {
      irVersion: 8,
      producerName: 'ppd',
      opsetImport: [{ domain: '', version: this.opset }, ...domains.map((domain) => ({ domain, version: DOMAIN_OPSETS[domain]! }))],
      graph: { name: this.name, node, input: this.inputs, output: this.outputs, initializer: this.initializers },
    };
    return onnx.ModelProto.encode(model).finish();
  }

  /**
   * Graph outputs that can be their producing node's own output, renamed, instead of an Identity
   * of it (output() records one): a forward then runs one kernel fewer per output (ORT does not
   * drop an Identity that feeds a graph output), 17 of a decoding graph's ~430. Not where the
   * value is a graph input or initializer, is itself an output, or is output under two names.
   */
  private outputAliases(): Map<string, string> {
    const produced = new Set(this.nodeList.flatMap((n) => n.outputs));
    const outputNames = new Set(this.outputs.map((o) => o.name));
    const aliases = new Map<string, string>();
    for (const n of this.nodeList) {
      const [value, name] = [n.inputs[0]!, n.outputs[0]!];
      if (n.opType !== 'Identity' || n.name !== `out_${name}` || !produced.has(value) || outputNames.has(value) || aliases.has(value)) continue;
      aliases.set(value, name);
    }
    return aliases;
  }

  /** Float data in the graph's float type (copied only when it is not already). */
  private asFloat(data: Float32Array | Float64Array): Float32Array | Float64Array {
    if (this.float === 'float32') return data instanceof Float32Array ? data : Float32Array.from(data);
    return data instanceof Float64Array ? data : Float64Array.from(data);
  }

  private define(name: string, info: ValueInfo): void {
    if (this.values.has(name)) throw new GraphError(`'${name}' is defined twice in graph ${this.name}`);
    this.values.set(name, { type: info.type, shape: info.shape ? [...info.shape] : undefined });
  }

  private record(node: GraphNode): void {
    this.nodeList.push(node);
  }

  private fresh(prefix: string): string {
    return `${prefix}_${this.counter++}`;
  }
}
