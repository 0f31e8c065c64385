import { router } from "../openapi";

export const adminRoutes = router();
