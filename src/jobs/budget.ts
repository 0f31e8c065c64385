/**
 * Counts subrequests (Redis requests + SQL queries + queue sends) against a limit. Workers cap
 * subrequests per invocation (50 on the free plan), and a tick must leave room for the rest.
 *
 * @example
 * const budget = new Budget(40);
 * if (budget.take(2)) await twoRequests();
 * budget.spend(1); // spent whether or not there was room (work that must run)
 */
export class Budget {
  used = 0;
  constructor(readonly limit: number) {}
  get left(): number {
    return Math.max(0, this.limit - this.used);
  }
  /** Takes `n` if available; false (taking nothing) otherwise. */
  take(n = 1): boolean {
    if (this.used + n > this.limit) return false;
    this.used += n;
    return true;
  }
  /** Records subrequests that were spent whether or not there was room. */
  spend(n: number): void {
    this.used += n;
  }
}
