/**
 * Which prompt-token rows see which, among the N·Vt rows attached after one token (PPD.md
 * section 2). Row r = i·Vt + j is virtual token j of prompt token i.
 *   ensemble: virtual j of prompt token i sees virtual j of prompt tokens 0..i (the paper's best)
 *   decoder:  causal over all rows in order (i-major, j-minor)
 *   encoder:  all virtual tokens of prompt tokens 0..i (bidirectional within a prompt token)
 * Every row also sees the token it is attached to and that token's context; that part is the
 * caller's (it depends on the cache and the tree).
 */

/** How the virtual tokens attached to one node attend to each other (PPD.md §2). */
export type AttentionVariant = 'ensemble' | 'decoder' | 'encoder';
export const ATTENTION_VARIANTS = ['ensemble', 'decoder', 'encoder'] as const satisfies readonly AttentionVariant[];

/** [R, R] with R = N·Vt: 1 where row a may attend to row b. */
export function promptVisibility(N: number, Vt: number, attention: AttentionVariant): Uint8Array {
  const R = N * Vt;
  const mask = new Uint8Array(R * R);
  for (let a = 0; a < R; a++) {
    const [ia, ja] = [Math.floor(a / Vt), a % Vt];
    for (let b = 0; b < R; b++) {
      const [ib, jb] = [Math.floor(b / Vt), b % Vt];
      const sees =
        attention === 'ensemble' ? ib <= ia && jb === ja : attention === 'decoder' ? b <= a : ib <= ia;
      mask[a * R + b] = sees ? 1 : 0;
    }
  }
  return mask;
}
