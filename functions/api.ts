import type { Env } from "../src/config/env";
import { createApp } from "../src/http/app";

const app = createApp();

export const fetch: ExportedHandlerFetchHandler<Env> = (request, env, ctx) =>
  app.fetch(request, env, ctx);
