/**
 * Progress bars for long jobs (training, tokenising, profiling, benchmarks), on stderr: count,
 * rate, ETA and any live fields (loss, lr). Without a terminal (logs, CI) it prints a plain line
 * every few seconds instead, so background runs still show progress.
 */
import { SingleBar } from 'cli-progress';

export class Progress {
  private readonly bar: SingleBar;
  private readonly start = performance.now();
  private value: number;
  private readonly initial: number;

  /** `fields` names live values shown after the rate, e.g. ['loss', 'lr']. */
  constructor(private readonly label: string, total: number, unit: string, fields: string[] = [], initial = 0) {
    const extra = fields.map((f) => ` | ${f} {${fieldKey(f)}}`).join('');
    this.bar = new SingleBar({
      stream: process.stderr,
      format: `${label} {bar} {value}/{total} ${unit} | {rate} ${unit}/s | ETA {eta_formatted}${extra}`,
      hideCursor: true,
      etaBuffer: 50,
      noTTYOutput: true,
      notTTYSchedule: 10_000,
    });
    this.value = initial;
    this.initial = initial;
    this.bar.start(total, initial, { rate: '-', ...Object.fromEntries(fields.map((f) => [fieldKey(f), '-'])) });
  }

  update(value: number, fields: Record<string, string | number> = {}, rate?: number): void {
    this.value = value;
    const seconds = (performance.now() - this.start) / 1000;
    const shown = rate ?? (seconds > 0 ? (value - this.initial) / seconds : 0); // a resumed job counts from where it resumed
    const live = Object.fromEntries(Object.entries(fields).map(([f, v]) => [fieldKey(f), v]));
    this.bar.update(value, { rate: shown < 10 ? shown.toFixed(2) : shown.toFixed(0), ...live });
  }

  /** Advances the count by `amount` (benchmarks count runs as they finish). */
  tick(amount = 1): void {
    this.update(this.value + amount);
  }

  /** Stops the bar; a `summary` is printed after it as one line, `label: summary`. */
  stop(summary?: string): void {
    this.bar.stop();
    if (summary !== undefined) process.stderr.write(`${this.label}: ${summary}\n`);
  }
}

/** cli-progress placeholders take word characters only ("tok/s" -> "tok_s"). */
const fieldKey = (label: string) => label.replace(/\W/g, '_');
