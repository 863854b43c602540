/**
 * Admission for generations: at most `concurrency` run at once (the model already uses every
 * core, so the default is one), at most `maxWaiting` wait in line (first come, first served),
 * and anyone beyond that is turned away at once rather than left to time out. Not a scheduler:
 * it neither batches nor preempts.
 */

/** The line is full: the caller should answer 429. */
export class QueueFullError extends Error {
  constructor(readonly maxWaiting: number) {
    super(`the server is busy: ${maxWaiting} request(s) are already waiting; retry later`);
    this.name = 'QueueFullError';
  }
}

/** Gives the slot back; calling it again does nothing. */
export type Release = () => void;

interface Waiter {
  grant: (release: Release) => void;
}

export class RequestQueue {
  private running = 0;
  private readonly waiting: Waiter[] = [];

  constructor(
    readonly concurrency: number,
    readonly maxWaiting: number,
  ) {
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`concurrency must be a positive integer, got ${concurrency}`);
    if (!Number.isInteger(maxWaiting) || maxWaiting < 0) throw new RangeError(`maxWaiting must be a non-negative integer, got ${maxWaiting}`);
  }

  /** Requests waiting for a slot. */
  get depth(): number {
    return this.waiting.length;
  }

  /** Requests holding a slot. */
  get active(): number {
    return this.running;
  }

  /**
   * A slot, once one is free. Throws QueueFullError at once when the line is full; rejects with
   * `signal.reason` (and leaves the line) when the signal aborts first.
   */
  acquire(signal?: AbortSignal): Promise<Release> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.running < this.concurrency) {
      this.running++;
      return Promise.resolve(this.releaser());
    }
    if (this.waiting.length >= this.maxWaiting) return Promise.reject(new QueueFullError(this.maxWaiting));
    return new Promise<Release>((resolve, reject) => {
      const onAbort = () => {
        const at = this.waiting.indexOf(waiter);
        if (at >= 0) this.waiting.splice(at, 1);
        reject(signal!.reason);
      };
      const waiter: Waiter = {
        grant: (release) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(release);
        },
      };
      this.waiting.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private releaser(): Release {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      // The slot passes straight to the next in line, so `running` stays the same.
      if (next) next.grant(this.releaser());
      else this.running--;
    };
  }
}
