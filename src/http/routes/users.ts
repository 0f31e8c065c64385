import { router } from "../openapi";

export const usersRoutes = router();
