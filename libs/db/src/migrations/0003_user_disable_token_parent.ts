import { Kysely, sql } from 'kysely';

/**
 * Cutting access:
 * - `users.disabled_at`: a disabled user's tokens all answer 401 until the user is enabled
 *   again (the tokens themselves are kept, neither revoked nor expired).
 * - `api_tokens.issued_by`: the token whose caller created this one, so a revoke can take every
 *   token created with a leaked one along (`DELETE /v1/tokens/:id?cascade=true`). Existing
 *   tokens have none.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    alter table users add column disabled_at timestamptz;
    alter table api_tokens add column issued_by uuid references api_tokens(id) on delete set null;
    create index api_tokens_issued_by on api_tokens (issued_by) where issued_by is not null;
  `.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`
    drop index if exists api_tokens_issued_by;
    alter table api_tokens drop column if exists issued_by;
    alter table users drop column if exists disabled_at;
  `.execute(db);
}
