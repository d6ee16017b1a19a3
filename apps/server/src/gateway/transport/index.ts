export { AgentGateway, type AgentGatewayOptions, type GatewayCounters, type GatewayStats } from './agent-gateway';
export { TokenBucket } from './token-bucket';
