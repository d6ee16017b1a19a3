export * from './config';
export * from './logging';
