import { router } from "../openapi";

export const inventoryRoutes = router();
