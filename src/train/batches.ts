/**
 * Training batches for the packed-rows training graph: B windows of T+1 tokens cut from a token
 * stream at random (seeded) starts, laid out as N = B*T rows with positions restarting at 0 for
 * each window and a block-diagonal causal mask, so one forward trains B independent sequences.
 */
import { Rng, type RngState } from '../sampling/rng.ts';
import { InputError } from '../errors.ts';

export interface PackedBatch {
  /** [N] input ids (the first T of each window). */
  ids: Int32Array;
  /** [N] the next token of each input row. */
  targets: Int32Array;
  /** [N] position within its window. */
  positions: Int32Array;
  /** [N, N] 1 where row i may attend to row j: same window and j <= i. */
  mask: Uint8Array;
}

export function packWindows(tokens: ArrayLike<number>, starts: readonly number[], seqLen: number): PackedBatch {
  const N = starts.length * seqLen;
  const batch: PackedBatch = {
    ids: new Int32Array(N),
    targets: new Int32Array(N),
    positions: new Int32Array(N),
    mask: new Uint8Array(N * N),
  };
  starts.forEach((start, b) => {
    if (start < 0 || start + seqLen >= tokens.length) throw new InputError(`window at ${start} runs past the ${tokens.length} tokens`);
    for (let t = 0; t < seqLen; t++) {
      const row = b * seqLen + t;
      batch.ids[row] = tokens[start + t]!;
      batch.targets[row] = tokens[start + t + 1]!;
      batch.positions[row] = t;
      batch.mask.fill(1, row * N + b * seqLen, row * N + row + 1);
    }
  });
  return batch;
}

/**
 * Random window starts from a seeded, resumable generator. A window is any run of the stream, so
 * it may straddle documents (BOS text EOS BOS text ...): a quarter to a half of 513-token
 * windows hold an EOS on the corpora here (docs/ARCHITECTURE.md, "Training"). That is deliberate and the
 * usual packing (GPT-3 packs documents so, unmasked; nanoGPT samples windows so): the model is
 * trained with EOS in its stream, so it learns to end a document and to begin the next one after
 * BOS, and attention is not reset at the boundary. What must not cross a document end is a
 * prompt-token training example, whose teacher is the model's continuation of one text
 * (train/distill.ts).
 */
export class WindowSampler {
  readonly rng: Rng;
  constructor(
    private readonly tokenCount: number,
    private readonly seqLen: number,
    seedOrState: number | RngState,
  ) {
    if (tokenCount <= seqLen + 1) throw new InputError(`the corpus has ${tokenCount} tokens, too few for windows of ${seqLen + 1}`);
    this.rng = typeof seedOrState === 'number' ? new Rng(seedOrState) : Rng.fromState(seedOrState);
  }

  next(count: number): number[] {
    const span = this.tokenCount - this.seqLen - 1;
    return Array.from({ length: count }, () => Math.floor(this.rng.next() * span));
  }
}
