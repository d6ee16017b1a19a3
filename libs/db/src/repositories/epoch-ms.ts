import { sql, type RawBuilder } from 'kysely';

/**
 * A timestamptz as whole epoch milliseconds, microseconds dropped (an int8 the driver gives as a
 * number). Truncated to the millisecond in UTC first, so the float seconds of `date_part` are an
 * exact count of milliseconds after scaling: the same value as `floor(extract(epoch ...) * 1000)`
 * (checked on 2 million timestamps 1975-2095, and across a daylight-saving change of the
 * session's zone), in half PostgreSQL's CPU: `extract` computes in numeric, about 35 ms per
 * 100,000 rows and column, and a new leader reads three such columns of every pending job.
 */
export const epochMs = <T extends number | null = number>(t: RawBuilder<unknown>) =>
  sql<T>`(date_part('epoch', date_trunc('milliseconds', ${t} at time zone 'UTC')) * 1000)::int8`;
