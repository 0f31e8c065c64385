export { LoaderBackoffError } from "./backoff";
export { LoadTimeoutError } from "./deadline";
export { EdgeCache } from "./engine";
export { assertGlob, assertName, InvalidKeyError, type KeySpace, keySpace } from "./keys";
export { L1Cache } from "./l1";
export { jitterTtl, shouldRefreshEarly } from "./policy";
export { FlightRegistry } from "./read/flights";
export { KnownEntries } from "./read/known";
export type { ScriptClient } from "./redis";
export type { EdgeCacheOptions } from "./setup";
export { IsolateTelemetry } from "./telemetry";
export type {
  CacheResult,
  CacheStatus,
  EntryOptions,
  HotKey,
  Inspection,
  PurgeStep,
  StatsSnapshot,
  WriteRefusal,
  WriteResult,
} from "./types";
export { CacheWriteError } from "./write/error";
