import type { Context, Env, Input } from "hono";

/**
 * Any route's context, whatever its bindings, variables, path and input. The helpers only use
 * `c.req`, `c.header`, `c.body`, `c.get` and `c.executionCtx`, which every context has; typing
 * them for one `Env` would refuse the contexts of typed apps (`Context` is invariant in `Env`).
 */
export type AnyContext<
  E extends Env = Env,
  P extends string = string,
  I extends Input = Input,
> = Context<E, P, I>;

/** The same context seen through the untyped lens the helpers work with. */
export const plain = <E extends Env, P extends string, I extends Input>(c: Context<E, P, I>) =>
  c as unknown as Context;
