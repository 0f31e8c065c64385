import { router } from "../openapi";

export const categoriesRoutes = router();
