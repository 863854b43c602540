/**
 * Rotary position embedding frequencies: the inverse frequencies a config implies (no scaling,
 * linear, Llama 3's banded "llama3" scaling, or per-frequency factors as llama.cpp stores them),
 * and the translations between Llama 3's parameters and llama.cpp's `rope_freqs` factors.
 * Not the rotation itself (llama-graph.ts).
 *
 * Shapes: D = head dim; every array here is [D/2], one entry per rotated pair.
 *
 * inv_freq[i] = theta^(-2i/D) / divisor[i], where divisor is
 *   none       1
 *   linear     factor                                  (positions divided by factor)
 *   llama3     1 for wavelengths below L/high, factor above L/low, and between them the
 *              interpolation 1 / ((1 - s)/factor + s), s = (L/wavelength - low)/(high - low)
 *              (transformers' _compute_llama3_parameters; L = original_max_position_embeddings)
 *   factors    factors[i]                               (llama.cpp's rope_freqs tensor, which
 *              convert_hf_to_gguf.py computes from the llama3 parameters as above)
 */

/** How the rotary frequencies are scaled. */
export type RopeScaling =
  | { type: 'none' }
  | { type: 'linear'; factor: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number }
  | { type: 'factors'; factors: number[] };

/** theta^(-2i/D), i < D/2, in float64. */
function baseFrequencies(headDim: number, theta: number): Float64Array {
  return Float64Array.from({ length: headDim / 2 }, (_, i) => 1 / Math.pow(theta, (2 * i) / headDim));
}

/** What each frequency is divided by, [D/2]. */
export function ropeDivisors(headDim: number, theta: number, scaling: RopeScaling): Float64Array {
  const half = headDim / 2;
  switch (scaling.type) {
    case 'none':
      return new Float64Array(half).fill(1);
    case 'linear':
      return new Float64Array(half).fill(scaling.factor);
    case 'factors':
      return Float64Array.from(scaling.factors);
    case 'llama3': {
      const { factor, lowFreqFactor: low, highFreqFactor: high, originalMaxPositionEmbeddings: context } = scaling;
      return baseFrequencies(headDim, theta).map((f) => {
        const wavelength = (2 * Math.PI) / f;
        if (wavelength < context / high) return 1;
        if (wavelength > context / low) return factor;
        const s = (context / wavelength - low) / (high - low);
        return 1 / ((1 - s) / factor + s);
      });
    }
  }
}

/** The inverse frequencies [D/2] the graph rotates by. */
export function ropeInverseFrequencies(headDim: number, theta: number, scaling: RopeScaling): Float64Array {
  const divisors = ropeDivisors(headDim, theta, scaling);
  return baseFrequencies(headDim, theta).map((f, i) => f / divisors[i]!);
}

/** Nearest value with 6 significant digits: parameters recovered by a fit, back to what a config file said. */
const tidy = (x: number) => Number(x.toPrecision(6));

/**
 * The llama3 parameters that reproduce llama.cpp's rope_freqs `factors`, or undefined when the
 * factors are not of that shape (or too few fall in the interpolated band to tell). Only the
 * ratios L/low and L/high are determined by the factors; low is taken as 1, Llama 3.x's value,
 * so that a file converted from a Llama 3 config.json gives that config back.
 */
export function llama3FromFactors(headDim: number, theta: number, factors: readonly number[]): RopeScaling | undefined {
  if (factors.length !== headDim / 2) return undefined;
  const factor = Math.max(...factors);
  if (!(factor > 1)) return undefined;
  const base = baseFrequencies(headDim, theta);
  // In the band, 1/divisor = (1 - s)/factor + s with s linear in 1/wavelength: s = a/wavelength - b.
  const band: { x: number; s: number }[] = [];
  factors.forEach((d, i) => {
    if (Math.abs(d - 1) > 1e-6 && Math.abs(d - factor) > 1e-6 * factor) {
      band.push({ x: base[i]! / (2 * Math.PI), s: (1 / d - 1 / factor) / (1 - 1 / factor) });
    }
  });
  if (band.length < 2) return undefined;
  const [p, q] = [band[0]!, band.at(-1)!];
  const a = (q.s - p.s) / (q.x - p.x);
  const b = a * p.x - p.s;
  if (!(a > 0 && b > 0)) return undefined;
  // a = L/(high - low), b = low/(high - low); with low = 1: high = 1 + 1/b, L = a/b.
  const candidate: RopeScaling = { type: 'llama3', factor: tidy(factor), lowFreqFactor: 1, highFreqFactor: tidy(1 + 1 / b), originalMaxPositionEmbeddings: tidy(a / b) };
  const again = ropeDivisors(headDim, theta, candidate);
  return factors.every((d, i) => Math.abs(again[i]! - d) <= 1e-4 * d) ? candidate : undefined;
}

/** One line for `ppd info`: "" for none, else the scaling and its parameters. */
export function describeRopeScaling(scaling: RopeScaling): string {
  switch (scaling.type) {
    case 'none':
      return '';
    case 'linear':
      return `linear scaling ${scaling.factor}`;
    case 'llama3':
      return `llama3 scaling (factor ${scaling.factor}, low ${scaling.lowFreqFactor}, high ${scaling.highFreqFactor}, original context ${scaling.originalMaxPositionEmbeddings})`;
    case 'factors':
      return `per-frequency factors ${Math.min(...scaling.factors)}..${Math.max(...scaling.factors)}`;
  }
}
