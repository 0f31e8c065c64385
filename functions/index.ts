import type { Env } from "../src/config/env";
import { fetch } from "./api";
import { queue } from "./purge";
import { scheduled } from "./warm";

/** The Worker module wrangler.toml points at: HTTP, cron and queue entry points. */
export default { fetch, scheduled, queue } satisfies ExportedHandler<Env>;
