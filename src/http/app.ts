import { Hono } from "hono";
import type { AppEnv } from "./context";
import { notFound, onError } from "./middleware/errors";
import { services } from "./middleware/services";
import { health } from "./routes/health";

export function createApp(): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.onError(onError);
  app.notFound(notFound);
  app.use("*", services);
  app.route("/", health);
  return app;
}
