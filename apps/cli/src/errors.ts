/** A refusal of the command line itself (exit 2): nothing was sent to the server. */
export class UsageError extends Error {}

/** The API answered with an error: its message, and each field with the rule it broke. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: { error?: string; message?: string; issues?: { field: string; rule: string }[] },
  ) {
    super(body.message ?? `HTTP ${status}`);
  }
}

/** No answer at all from the server: the message names the URL tried and says which variable sets it. */
export class UnreachableError extends Error {
  constructor(url: string, cause: string) {
    super(`cannot reach the Nuri server at ${url} (${cause}); set NURI_URL`);
  }
}
