/** One server-sent event (https://html.spec.whatwg.org/multipage/server-sent-events.html). */
export interface ServerSentEvent {
  /** becomes the client's `lastEventId` and, on reconnection, its `Last-Event-ID` header */
  id?: string;
  /** the event type; absent means `message` */
  event?: string;
  /** serialised as JSON, so it never holds a raw newline or carriage return */
  data: unknown;
}

/** Serialises one event in the `text/event-stream` format, ending in the blank line that dispatches it. */
export function toServerSentEvent(message: ServerSentEvent): string {
  let text = '';
  if (message.id !== undefined) text += `id: ${message.id.replace(/[\r\n\0]/g, '')}\n`;
  if (message.event !== undefined) text += `event: ${message.event.replace(/[\r\n]/g, '')}\n`;
  // JSON escapes U+000A and U+000D inside strings; U+2028/2029 are not line ends for SSE parsers
  return `${text}data: ${JSON.stringify(message.data)}\n\n`;
}

/**
 * Splits a stream of log bytes into whole lines: `push(chunk)` returns the lines the chunk
 * completes and the byte offset after them; bytes after the last newline wait for the next
 * chunk (so a multi-byte character is never cut). `flush()` returns what is left as a last
 * line without a newline.
 */
export function createLineSplitter(offset: number): {
  push(chunk: Buffer): { lines: string[]; end: number } | null;
  flush(): { lines: string[]; end: number } | null;
} {
  let carry: Buffer = Buffer.alloc(0);
  let end = offset;
  return {
    push(chunk) {
      const bytes = carry.length === 0 ? chunk : Buffer.concat([carry, chunk]);
      const last = bytes.lastIndexOf(0x0a);
      if (last === -1) {
        carry = Buffer.from(bytes);
        return null;
      }
      carry = Buffer.from(bytes.subarray(last + 1));
      end += last + 1;
      return { lines: bytes.subarray(0, last).toString('utf8').split('\n'), end };
    },
    flush() {
      if (carry.length === 0) return null;
      end += carry.length;
      const lines = [carry.toString('utf8')];
      carry = Buffer.alloc(0);
      return { lines, end };
    },
  };
}
