export { flushTelemetry, type HotWindows } from "./flush";
export {
  DEFAULT_SHARDS,
  IsolateTelemetry,
  type TelemetryBatch,
  telemetryFor,
} from "./isolate";
export { readHotKeys, readStats } from "./query";
