import type { OutboxLag } from "../domain/outbox";
import {
  decideSweep,
  EVERY_TICK,
  readSweepState,
  recordSweep,
  type SweepDecision,
  type SweepState,
  seedIntent,
  writeWindowMs,
} from "../domain/outbox-sweep";
import type { Services } from "../runtime/services";
import { describeError } from "./apply-event";
import type { Budget } from "./budget";
import type { DrainReport } from "./drain";

/**
 * The cron tick's side of OUTBOX_SWEEP_MINUTES (the rules: src/domain/outbox-sweep.ts): before
 * the drain, whether this tick reads the outbox at all; after it, what the next tick may rely
 * on. With the setting at 0 every tick sweeps and nothing is read or recorded.
 *
 * @example
 *   const sweep = await openSweep(services, Date.now(), budget);
 *   if (sweep.decision.sweep) {
 *     const drain = await drainOutbox(…); const lag = await pruneAndLag(…);
 *     await closeSweep(services, sweep, drain, lag);
 *   }
 */
export interface OpenSweep {
  decision: SweepDecision;
  /** When the tick began, before the state and the SELECT: commits before it are in the drain's snapshot. */
  startedAt: number;
  /** It read the state, so it records what it saw (not when the mode is off or Redis failed). */
  records: boolean;
  /** The intent this sweep stands for: the one it read, or the one it recreated. */
  intent: string | null;
}

/**
 * Reads the sweep state (one MGET) and decides; a sweep that finds no intent recreates it
 * (`seedIntent`: a missing intent is never quiet, so without it no tick would skip). Spends
 * from `budget` what it sends, and, for a sweeping tick, its lag statement and its record.
 */
export async function openSweep(
  services: Services,
  startedAt: number,
  budget: Budget,
): Promise<OpenSweep> {
  const { CACHE_PREFIX, OUTBOX_SWEEP_MINUTES } = services.config;
  if (OUTBOX_SWEEP_MINUTES <= 0) {
    budget.spend(1); // the lag statement
    return { decision: EVERY_TICK, startedAt, records: false, intent: null };
  }
  budget.spend(1); // the state's MGET
  let state: SweepState;
  try {
    state = await readSweepState(services.redis, CACHE_PREFIX);
  } catch (error) {
    // Unknown is not quiet: read Postgres, record nothing.
    budget.spend(1);
    const why = `sweep state unreadable: ${describeError(error)}`;
    return { decision: { sweep: true, why }, startedAt, records: false, intent: null };
  }
  const decision = decideSweep(state, startedAt, {
    everyMs: OUTBOX_SWEEP_MINUTES * 60_000,
    windowMs: writeWindowMs(services.config),
  });
  if (!decision.sweep) return { decision, startedAt, records: false, intent: state.intent };
  budget.spend(2); // the lag statement, and the sweep's record
  let intent = state.intent;
  if (intent === null) {
    budget.spend(1);
    intent = await seedIntent(services.redis, CACHE_PREFIX, startedAt).catch((error: unknown) => {
      console.warn(`outbox intent not recreated (the next tick sweeps): ${describeError(error)}`);
      return null;
    });
  }
  return { decision, startedAt, records: true, intent };
}

/**
 * Records what a sweeping tick saw, when it read the state: clean when the drain caught up and
 * nothing is pending but parked rows (no drain takes those), young ones included (a drain leaves
 * them to their writers for a while). Only a clean record lets a later tick skip.
 */
export async function closeSweep(
  services: Services,
  sweep: OpenSweep,
  drain: DrainReport | { error: string },
  lag: OutboxLag | null,
): Promise<void> {
  if (!sweep.records) return;
  const clean =
    "stoppedBy" in drain &&
    drain.stoppedBy === "caught-up" &&
    lag !== null &&
    lag.pending - lag.stuck === 0;
  await recordSweep(services.redis, services.config.CACHE_PREFIX, {
    at: sweep.startedAt,
    clean,
    intent: sweep.intent,
  }).catch((error: unknown) =>
    console.warn(`outbox sweep not recorded (the next tick sweeps): ${describeError(error)}`),
  );
}
