import { HttpException, HttpStatus } from '@nestjs/common';
import type { ApiError } from '@nuri/contracts';

export type Issue = { field: string; rule: string };

/** Every error the API answers with carries the ApiError body; the filter writes it as is. */
export class ApiException extends HttpException {
  constructor(status: number, readonly body: ApiError) {
    super(body, status);
  }
}

export const invalid = (message: string, issues: Issue[]) =>
  new ApiException(HttpStatus.BAD_REQUEST, { error: 'invalid_request', message, issues });

/** One field broke one rule: the shape validation errors have, for checks beyond the schema. */
export const invalidField = (field: string, rule: string) => invalid(`${field}: ${rule}`, [{ field, rule }]);

export const notFound = (message = 'not found') => new ApiException(HttpStatus.NOT_FOUND, { error: 'not_found', message });

export const conflict = (message: string) => new ApiException(HttpStatus.CONFLICT, { error: 'conflict', message });

export const forbidden = (message: string) => new ApiException(HttpStatus.FORBIDDEN, { error: 'forbidden', message });

export const unauthorized = (message: string) => new ApiException(HttpStatus.UNAUTHORIZED, { error: 'unauthorized', message });

/** PostgreSQL's unique_violation, from either driver. */
export function isUniqueViolation(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: unknown }).code === '23505';
}

/** Runs a write and turns a duplicate name into 409 instead of 500. */
export async function uniqueOr409<T>(what: string, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (e) {
    if (isUniqueViolation(e)) throw conflict(`${what} already exists`);
    throw e;
  }
}
