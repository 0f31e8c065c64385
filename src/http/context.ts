import type { Env } from "../config/env";
import type { Services } from "../runtime/services";

/** Hono's type parameter for every route: bindings plus the per-request services. */
export interface AppEnv {
  Bindings: Env;
  Variables: { services: Services };
}
