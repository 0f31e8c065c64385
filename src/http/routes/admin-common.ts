import { errorContent as errorJson } from "../schemas";

/**
 * What every /admin route's document shares: the bearer scheme (registered once, by
 * routes/admin.ts, as `adminBearer`) and the error responses in the one JSON shape.
 */
export const security = [{ adminBearer: [] }];

/** A response in the JSON error shape. */
export const errorContent = (description: string) => ({ description, content: errorJson });

/** 503 is not here: the document's completion adds it to every admin route with Retry-After. */
export const errors = {
  400: errorContent("Validation failed: `details.issues` says which field and why"),
  401: errorContent("Missing or wrong bearer token"),
};
