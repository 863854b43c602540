/**
 * StopStrings: ends generation at the first occurrence of any stop string in the streamed text.
 *
 * Text arrives in pieces (from StreamDecoder), and a stop string can straddle pieces, so the
 * matcher holds back any tail that could still become the start of a stop string and releases it
 * once it cannot. The stop string itself is never emitted. Not token-level stopping (EOS ids and
 * length limits belong to the decode loop).
 */
import { InputError } from '../errors.ts';

export interface StopResult {
  /** Text that is now certain to be output (everything before any stop string). */
  emit: string;
  /** True once a stop string was seen; later pieces are ignored. */
  stopped: boolean;
}

export class StopStrings {
  private readonly stops: readonly string[];
  private held = ''; // tail of the text so far that is a proper prefix of some stop string
  private done = false;

  constructor(stops: readonly string[]) {
    for (const s of stops) {
      if (typeof s !== 'string' || s.length === 0) {
        throw new InputError(`stop strings must be non-empty strings, got ${JSON.stringify(s)}`);
      }
    }
    this.stops = [...stops];
  }

  get stopped(): boolean {
    return this.done;
  }

  /** Feeds the next piece of text. */
  push(piece: string): StopResult {
    if (this.done) return { emit: '', stopped: true };
    // Every occurrence that could start in text already emitted starts inside `held` (held is
    // the longest such tail), so searching held + piece finds the earliest occurrence overall.
    const text = this.held + piece;
    let cut = -1;
    for (const s of this.stops) {
      const at = text.indexOf(s);
      if (at !== -1 && (cut === -1 || at < cut)) cut = at;
    }
    if (cut !== -1) {
      this.done = true;
      this.held = '';
      return { emit: text.slice(0, cut), stopped: true };
    }
    const keep = this.longestPartialMatch(text);
    this.held = text.slice(text.length - keep);
    return { emit: text.slice(0, text.length - keep), stopped: false };
  }

  /** Releases the held-back tail when the text ends without a stop string. */
  flush(): string {
    const rest = this.done ? '' : this.held;
    this.held = '';
    return rest;
  }

  /** Length of the longest suffix of `text` that is a proper prefix of some stop string. */
  private longestPartialMatch(text: string): number {
    let best = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, text.length); n > best; n--) {
        if (text.endsWith(s.slice(0, n))) {
          best = n;
          break;
        }
      }
    }
    return best;
  }
}
