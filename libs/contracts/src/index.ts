export * from './constants';
export * from './gpu';
export * from './common';
export * from './api';
export * from './wire';
