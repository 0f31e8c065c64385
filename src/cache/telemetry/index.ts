export { flushTelemetry, type HotWindows } from "./flush";
export {
  DEFAULT_SHARDS,
  FLUSH_LOST_MS,
  IsolateTelemetry,
  MAX_TELEMETRY_PREFIXES,
  type TelemetryBatch,
  takeOrphans,
  telemetryFor,
} from "./isolate";
export { readHotKeys, readStats } from "./query";
