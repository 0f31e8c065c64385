/** Names shared by the global setup and the test configs: what the local test stack provides. */
export interface TestStack {
  redisUrl: string;
  redisDb: number;
  gatewayUrl: string;
  gatewayToken: string;
  databaseUrl: string;
  wsProxy: string;
  adminToken: string;
}

declare module "vitest" {
  export interface ProvidedContext {
    stack: TestStack;
  }
}
