/**
 * GraphBuilder: a small, readable way to write an ONNX graph in TypeScript.
 *
 * Each `op` call adds one node and returns the name of its output, so model code reads like the
 * math (`const y = g.op('MatMul', [x, w])`). Large weights are streamed to an external-data file
 * as they are added (ONNX protobufs cannot exceed 2 GB, and ppd never holds a whole checkpoint in
 * memory); small constants stay inside the model. This file knows ONNX, not LLaMA.
 */
import onnxProto from 'onnx-proto';
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { basename } from 'node:path';

const { onnx } = onnxProto;
type ModelProto = onnxProto.onnx.IModelProto;
type NodeProto = onnxProto.onnx.INodeProto;
type TensorProto = onnxProto.onnx.ITensorProto;
type ValueInfoProto = onnxProto.onnx.IValueInfoProto;

export type ElemType = 'float32' | 'int64' | 'bool';
/** A dimension: a fixed size, or a symbolic name such as 'T' (rows) or 'P' (past length). */
export type Dim = number | string;
export type AttrValue = number | number[] | string | { floats: number[] } | { float: number };

const ELEM_TYPES: Record<ElemType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  int64: onnx.TensorProto.DataType.INT64,
  bool: onnx.TensorProto.DataType.BOOL,
};

/** Tensors at least this large go to the external-data file instead of the protobuf. */
const EXTERNAL_MIN_BYTES = 1024;
/** External tensors start on page boundaries so ONNX Runtime may map them directly. */
const EXTERNAL_ALIGN = 4096;

/** Appends raw tensor bytes to one file and remembers where each one landed. */
class ExternalDataWriter {
  private fd: number;
  private offset = 0;
  constructor(readonly path: string) {
    this.fd = openSync(path, 'w');
  }
  append(bytes: Uint8Array): { offset: number; length: number } {
    const padding = (EXTERNAL_ALIGN - (this.offset % EXTERNAL_ALIGN)) % EXTERNAL_ALIGN;
    if (padding > 0) {
      writeSync(this.fd, new Uint8Array(padding), 0, padding, this.offset);
      this.offset += padding;
    }
    const start = this.offset;
    let written = 0;
    while (written < bytes.length) {
      written += writeSync(this.fd, bytes, written, bytes.length - written, start + written);
    }
    this.offset += bytes.length;
    return { offset: start, length: bytes.length };
  }
  close(): void {
    fsyncSync(this.fd);
    closeSync(this.fd);
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
        elemType: ELEM_TYPES[type],
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function bytesOf(data: Float32Array | BigInt64Array): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

export class GraphBuilder {
  private nodes: NodeProto[] = [];
  private inputs: ValueInfoProto[] = [];
  private outputs: ValueInfoProto[] = [];
  private initializers: TensorProto[] = [];
  private counter = 0;
  private external: ExternalDataWriter | undefined;

  /**
   * @param externalDataPath where large weights are written; the model file must later be saved
   *   in the same folder, since ONNX stores the location relative to the model.
   */
  constructor(private readonly name: string, externalDataPath?: string, readonly opset = 18) {
    if (externalDataPath) this.external = new ExternalDataWriter(externalDataPath);
  }

  input(name: string, type: ElemType, dims: Dim[]): string {
    this.inputs.push(valueInfo(name, type, dims));
    return name;
  }

  /** Marks an existing value as a graph output, renaming it through an Identity node. */
  output(value: string, name: string, type: ElemType, dims: Dim[]): void {
    this.nodes.push({ opType: 'Identity', input: [value], output: [name], name: `out_${name}` });
    this.outputs.push(valueInfo(name, type, dims));
  }

  /** A tensor of fixed values; large ones are written to the external-data file. */
  initializer(name: string, data: Float32Array | BigInt64Array, dims: number[]): string {
    const dataType = data instanceof Float32Array ? ELEM_TYPES.float32 : ELEM_TYPES.int64;
    const bytes = bytesOf(data);
    const tensor: TensorProto = { name, dims, dataType };
    if (this.external && bytes.length >= EXTERNAL_MIN_BYTES) {
      const { offset, length } = this.external.append(bytes);
      tensor.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
      tensor.externalData = [
        { key: 'location', value: basename(this.external.path) },
        { key: 'offset', value: String(offset) },
        { key: 'length', value: String(length) },
      ];
    } else {
      tensor.rawData = bytes.slice();
    }
    this.initializers.push(tensor);
    return name;
  }

  /** A small int64 constant such as a shape or an axis list. */
  ints(values: number[]): string {
    return this.initializer(this.fresh('ints'), BigInt64Array.from(values.map(BigInt)), [values.length]);
  }

  /** A float scalar constant (shape [], broadcasts everywhere). */
  scalar(value: number): string {
    const name = this.fresh('scalar');
    this.initializers.push({ name, dims: [], dataType: ELEM_TYPES.float32, rawData: bytesOf(new Float32Array([value])).slice() });
    return name;
  }

  /** Adds one node and returns its single output's name. */
  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, domain?: string): string {
    return this.opMulti(opType, inputs, 1, attrs, domain)[0]!;
  }

  /** Adds one node with `outputCount` outputs and returns their names. */
  opMulti(opType: string, inputs: string[], outputCount: number, attrs: Record<string, AttrValue> = {}, domain?: string): string[] {
    const name = this.fresh(opType);
    const outputs = Array.from({ length: outputCount }, (_, i) => `${name}_out${i}`);
    this.nodes.push({
      opType,
      name,
      input: inputs,
      output: outputs,
      domain: domain ?? '',
      attribute: Object.entries(attrs).map(([key, value]) => attribute(key, value)),
    });
    return outputs;
  }

  /** Finishes the external-data file (if any) and returns the serialised ModelProto. */
  finish(): Uint8Array {
    this.external?.close();
    this.external = undefined;
    const model: ModelProto = {
      irVersion: 8,
      producerName: 'ppd',
      opsetImport: [{ domain: '', version: this.opset }],
      graph: {
        name: this.name,
        node: this.nodes,
        input: this.inputs,
        output: this.outputs,
        initializer: this.initializers,
      },
    };
    return onnx.ModelProto.encode(model).finish();
  }

  private fresh(prefix: string): string {
    return `${prefix}_${this.counter++}`;
  }
}
