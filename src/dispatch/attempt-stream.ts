import type { Redis } from 'ioredis';
import type { BuildLogWriter } from '../builds/build-log-writer.js';
import { toMessage } from '../errors.js';
import { streamEntrySchema, type StreamEntry } from './protocol.js';

/** Seconds an attempt's stream is kept after its last entry (the server deletes it once it has read the end). */
const STREAM_TTL_SECONDS = 24 * 3600;

/**
 * The worker's side of an attempt's stream: a {@link BuildLogWriter} for the executor, and
 * the progress reports and the end. Entries are appended in call order with ids `0-1`,
 * `0-2`, …; an append whose answer was lost and is sent again (ioredis resends what was in
 * flight after a reconnect) is refused by Redis as not above the last id, which is taken as
 * done: every entry is stored exactly once.
 */
export interface AttemptStreamWriter extends BuildLogWriter {
  /** Appends an entry; resolves once Redis has it. Rejects when Redis refused it for another reason. */
  append(entry: StreamEntry): Promise<void>;
  /** Resolves once every entry appended so far is stored; rejects with the first failure. */
  flush(): Promise<void>;
}

/** Creates the writer of stream `key` (see {@link logStreamKey}) over `redis`. */
export function createAttemptStreamWriter(redis: Redis, key: string): AttemptStreamWriter {
  let seq = 0;
  let size = 0;
  let chain: Promise<void> = Promise.resolve();
  let failure: Error | null = null;

  function append(entry: StreamEntry): Promise<void> {
    seq += 1;
    const id = `0-${seq}`;
    const body = JSON.stringify(entry);
    const step = chain.then(async () => {
      if (failure !== null) throw failure;
      try {
        await redis.xadd(key, id, 'e', body);
      } catch (err) {
        // the same id stored already: an append resent after a reconnect
        if (!/equal or smaller than the target stream top item/.test(toMessage(err))) {
          failure = err instanceof Error ? err : new Error(toMessage(err));
          throw failure;
        }
      }
      if (seq === 1 || entry.t === 'end') await redis.expire(key, STREAM_TTL_SECONDS);
    });
    chain = step.catch(() => undefined);
    return step;
  }

  return {
    append,
    line(text) {
      size += Buffer.byteLength(text) + 1;
      append({ t: 'lines', lines: [text] }).catch(() => undefined);
    },
    lines(texts) {
      if (texts.length === 0) return Promise.resolve();
      for (const text of texts) size += Buffer.byteLength(text) + 1;
      return append({ t: 'lines', lines: [...texts] });
    },
    close() {
      // the end entry is what closes the log on the server
    },
    get size() {
      return size;
    },
    async flush() {
      await chain;
      if (failure !== null) throw failure;
    },
  };
}

/** One entry read from an attempt's stream, with its id. */
export interface ReadEntry {
  id: string;
  entry: StreamEntry;
}

/**
 * Reads the entries of stream `key` after id `after` (`0-0` for all), waiting up to
 * `blockMs` for new ones. An entry that does not parse is skipped and reported through
 * `onBadEntry` (a worker of another version; never thrown).
 */
export async function readAttemptStream(
  redis: Redis,
  key: string,
  after: string,
  blockMs: number,
  onBadEntry: (id: string, problem: string) => void,
): Promise<ReadEntry[]> {
  const answer = (await redis.xread('COUNT', 1000, 'BLOCK', blockMs, 'STREAMS', key, after)) as [string, [string, string[]][]][] | null;
  const out: ReadEntry[] = [];
  for (const [, entries] of answer ?? []) {
    for (const [id, fields] of entries) {
      const at = fields.indexOf('e');
      let parsed: unknown;
      try {
        parsed = JSON.parse(at === -1 ? 'null' : (fields[at + 1] ?? 'null'));
      } catch {
        parsed = null;
      }
      const checked = streamEntrySchema.safeParse(parsed);
      if (checked.success) out.push({ id, entry: checked.data });
      else onBadEntry(id, checked.error.issues[0]?.message ?? 'not an entry');
    }
  }
  return out;
}
