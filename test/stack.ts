/** Names shared by the global setup and the test configs: what the local test stack provides. */
export interface TestStack {
  redisUrl: string;
  redisDb: number;
  gatewayUrl: string;
  gatewayToken: string;
  /** More tokens on the same Redis DB, each with its own request counter: a test file that
   * counts requests takes one of its own so parallel files cannot disturb the count. */
  spareGatewayTokens: {
    engine: string;
    health: string;
    faults: string;
    jobs: string;
    publish: string;
    ratelimit: string;
    dashboard: string;
    outbox: string;
    failures: string;
    coalesce: string;
    client: string;
    pipelining: string;
    lean: string;
    sessions: string;
    preconditions: string;
    deadLetter: string;
    costs: string;
  };
  databaseUrl: string;
  /** The test database's name on a port where nothing listens (Postgres stopped). */
  deadPostgresUrl: string;
  /** The same on a TCP listener that accepts and never answers (Postgres hung). */
  hungPostgresUrl: string;
  /** The same through a forwarder that holds Postgres's every answer `slowPostgresDelayMs`. */
  slowPostgresUrl: string;
  slowPostgresDelayMs: number;
  wsProxy: string;
  adminToken: string;
}

declare module "vitest" {
  export interface ProvidedContext {
    stack: TestStack;
  }
}
