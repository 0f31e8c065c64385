import { router } from "../openapi";

export const sessionsRoutes = router();
