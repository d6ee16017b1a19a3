import { SCRIPT_MAX_BYTES } from '@nuri/contracts';

/**
 * The largest request body the API reads: a job's script may be SCRIPT_MAX_BYTES, and JSON
 * may write each of its bytes in up to six (`\u001b`), so that script always fits.
 */
export const BODY_LIMIT_BYTES = Math.max(1024 * 1024, 8 * SCRIPT_MAX_BYTES);
