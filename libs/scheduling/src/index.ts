export * from './types';
export { schedule } from './policy';
