/**
 * Counters the engine knows only client-side (loads, lease waits, Redis errors…). They ride
 * along with the next read script as one extra argument, so counting costs no request.
 */
export class PendingCounters {
  readonly #counts = new Map<string, number>();

  add(field: string, delta = 1): void {
    this.#counts.set(field, (this.#counts.get(field) ?? 0) + delta);
  }

  /** Takes the pending counts; `restore` puts them back when the request carrying them failed. */
  drain(): { encoded: string; restore(): void } {
    if (this.#counts.size === 0) return { encoded: "", restore: () => {} };
    const taken = [...this.#counts];
    this.#counts.clear();
    return {
      encoded: taken.map(([field, delta]) => `${field},${delta}`).join(","),
      restore: () => {
        for (const [field, delta] of taken) this.add(field, delta);
      },
    };
  }
}
