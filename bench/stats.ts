/** Summary of a sample of durations in milliseconds. */
export interface Summary {
  n: number;
  min: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

/** Nearest-rank percentiles of `samples` (milliseconds). */
export function summarize(samples: readonly number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN;
  return { n: sorted.length, min: sorted[0] ?? NaN, p50: at(50), p95: at(95), p99: at(99), max: sorted.at(-1) ?? NaN };
}

/** One line: `label  n=…  p50 … ms  p95 … ms  p99 … ms  max … ms`. */
export function formatSummary(label: string, s: Summary): string {
  const ms = (v: number) => (v < 10 ? v.toFixed(2) : v.toFixed(0));
  return `${label.padEnd(44)} n=${String(s.n).padStart(3)}  p50 ${ms(s.p50).padStart(7)} ms  p95 ${ms(s.p95).padStart(7)} ms  p99 ${ms(s.p99).padStart(7)} ms  max ${ms(s.max).padStart(7)} ms`;
}

/** Prints a goal check: `goal … : met` or `NOT met`. */
export function goal(text: string, met: boolean): string {
  return `  goal ${text}: ${met ? 'met' : 'NOT met'}`;
}

/** Milliseconds since `start` (from performance.now()). */
export const since = (start: number): number => performance.now() - start;
