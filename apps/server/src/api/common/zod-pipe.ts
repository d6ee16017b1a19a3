import { PipeTransform } from '@nestjs/common';
import type { z } from 'zod';
import { invalid, Issue } from './errors';

/** Flattens zod's issues to {field, rule}: the dotted path of the field and the rule it broke. */
export function toIssues(error: z.ZodError): Issue[] {
  const out: Issue[] = [];
  for (const i of error.issues) {
    const path = i.path.map(String);
    if (i.code === 'unrecognized_keys') {
      for (const k of i.keys) out.push({ field: [...path, k].join('.'), rule: 'unknown field' });
    } else {
      out.push({ field: path.join('.') || '(root)', rule: i.message });
    }
  }
  return out;
}

/** Parses with a schema, or throws a 400 naming each field and rule. */
export function parseOr400<S extends z.ZodType>(schema: S, value: unknown, where: string): z.infer<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issues = toIssues(r.error);
  throw invalid(`invalid ${where}: ${issues.map((i) => `${i.field}: ${i.rule}`).join('; ')}`, issues);
}

/** `@Body(new Zod(SubmitJob))`: the handler receives the parsed, typed value. */
export class Zod<S extends z.ZodType> implements PipeTransform<unknown, z.infer<S>> {
  constructor(
    private readonly schema: S,
    private readonly where = 'request',
  ) {}
  transform(value: unknown): z.infer<S> {
    // Express 5 gives query objects a null prototype; zod reads them fine either way.
    return parseOr400(this.schema, value ?? {}, this.where);
  }
}
