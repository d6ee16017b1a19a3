export * from './constants';
export * from './common';
export * from './api';
export * from './wire';
