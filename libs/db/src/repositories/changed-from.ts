import { sql } from 'kysely';

/**
 * Rows whose change_xid is at or after `horizon`, as a range the planner estimates as narrow.
 * The upper bound excludes nothing (a row version this snapshot sees was written below its
 * xmax), but alone `change_xid >= horizon` has no estimate until the table is analyzed and
 * the planner guessed a third of the table: the leader's change reads, about 100 a second
 * under a stream of submissions, each scanned all of jobs (1.6 ms a read at 17,000 jobs,
 * more PostgreSQL time than the submissions' own inserts).
 */
export const changedFrom = (horizon: string, table?: string) => {
  const col = table ? sql.ref(`${table}.change_xid`) : sql.ref('change_xid');
  return sql<boolean>`(${col} >= ${horizon}::xid8 and ${col} < pg_snapshot_xmax(pg_current_snapshot()))`;
};
