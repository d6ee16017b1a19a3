export * from './schema';
export * from './database';
export * from './migrate';
export * from './repositories/tenants.repository';
export * from './repositories/identity.repository';
export * from './repositories/nodes.repository';
export * from './repositories/jobs.repository';
export * from './repositories/usage.repository';
