import { ConsoleLogger, type LogLevel } from '@nestjs/common';
import { colorsWanted, logFields, type LogFormat } from '@nuri/config';

/**
 * The server's Nest logger. `json`: one JSON object a line (level, pid, timestamp in ms,
 * message, context, and the job and node the message names as `job` and `node`; a plain
 * object passed after the message is spread into the line). `text`: Nest's usual lines,
 * with colour codes only when stdout is a terminal, so files and journald get plain text.
 */
export class NuriLogger extends ConsoleLogger {
  constructor(format: LogFormat, logLevels: LogLevel[], colors = colorsWanted()) {
    const json = format === 'json';
    super({ logLevels, json, colors: json ? false : colors, flattenParams: true });
  }

  protected override getJsonLogObject(message: unknown, options: Parameters<ConsoleLogger['getJsonLogObject']>[1]): ReturnType<ConsoleLogger['getJsonLogObject']> {
    const o = super.getJsonLogObject(message, options);
    if (typeof message === 'string') {
      for (const [k, v] of Object.entries(logFields(message))) if (!(k in o)) o[k] = v;
    }
    return o;
  }
}
