import { router } from "../openapi";

export const productsRoutes = router();
