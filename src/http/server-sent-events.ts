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
