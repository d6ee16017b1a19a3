import { Injectable } from '@nestjs/common';
import { ApiError } from '@nuri/contracts';
import { z } from 'zod';
import { ROUTES } from './routes';

type Json = Record<string, unknown>;

const schema = (s: z.ZodType, io: 'input' | 'output'): Json => {
  const { $schema: _, ...rest } = z.toJSONSchema(s, { io, unrepresentable: 'any' }) as Json;
  return rest;
};

const ERRORS: Record<number, string> = {
  400: 'Invalid request: each issue names the field and the rule it broke',
  401: 'No valid token',
  403: 'The role may not do this',
  404: 'Not found, or not visible to the caller',
  409: 'Conflict with the current state, or a duplicate name',
};

/** Builds the OpenAPI 3.1 document from the route table and the zod schemas of libs/contracts. */
export function buildOpenApi(): Json {
  const paths: Record<string, Record<string, Json>> = {};
  for (const r of ROUTES) {
    const path = r.path.replace(/:(\w+)/g, '{$1}');
    const parameters: Json[] = [];
    for (const [where, obj] of [['path', r.params], ['query', r.query]] as const) {
      if (!obj) continue;
      const js = schema(obj, 'input') as { properties?: Record<string, Json>; required?: string[] };
      for (const [name, s] of Object.entries(js.properties ?? {}))
        parameters.push({ name, in: where, required: where === 'path' || (js.required ?? []).includes(name), schema: s });
    }
    const responses: Record<string, Json> = {};
    for (const [status, s] of Object.entries(r.responses))
      responses[status] = s ? { description: 'OK', content: { [r.contentType ?? 'application/json']: { schema: schema(s, 'output') } } } : { description: 'No content' };
    const errorCodes = [...(r.auth === false && r.method === 'get' && !r.params && !r.query ? [] : [400]), ...(r.auth === false ? [] : [401]), ...(Array.isArray(r.auth) ? [403] : []), ...(r.params ? [404] : []), ...(r.method === 'get' ? [] : [409])];
    for (const c of errorCodes) responses[String(c)] = { description: ERRORS[c], content: { 'application/json': { schema: { $ref: '#/components/schemas/ApiError' } } } };
    paths[path] ??= {};
    paths[path][r.method] = {
      summary: r.summary,
      operationId: `${r.method}${r.path.replace(/[/:.]+(\w)/g, (_, c: string) => c.toUpperCase())}`,
      ...(r.auth === false ? { security: [] } : {}),
      ...(Array.isArray(r.auth) ? { 'x-roles': r.auth } : {}),
      ...(parameters.length ? { parameters } : {}),
      ...(r.body ? { requestBody: { required: true, content: { 'application/json': { schema: schema(r.body, 'input') } } } } : {}),
      responses,
    };
  }
  return {
    openapi: '3.1.0',
    info: { title: 'Nuri API', version: '1', description: 'GPU job scheduling for a shared compute center. Authenticate with `Authorization: Bearer <token>`.' },
    servers: [{ url: '/' }],
    security: [{ bearer: [] }],
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } }, schemas: { ApiError: schema(ApiError, 'output') } },
    paths,
  };
}

@Injectable()
export class OpenApiService {
  private doc?: Json;
  document(): Json {
    return (this.doc ??= buildOpenApi());
  }
}
