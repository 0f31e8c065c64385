/**
 * Client for the gateway's per-token control API (`/__gateway/stats|reset|faults`, see the
 * README's "Control API"): GET without a body, POST with one. A non-2xx answer throws with the
 * gateway's status and body, so a bench never runs on with the wrong faults or counters.
 *
 * @example
 *   await gatewayControl(gateway.url, token, "faults", { latencyMs: 5, jitterMs: 2 });
 *   const { requests } = await gatewayControl<{ requests: number }>(gateway.url, token, "stats");
 */
export async function gatewayControl<T = unknown>(
  gatewayUrl: string,
  token: string,
  path: "stats" | "reset" | "faults",
  body?: unknown,
): Promise<T> {
  const res = await fetch(`${gatewayUrl}/__gateway/${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`gateway ${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}
