/**
 * The viewers of bench/logs.ts, in their own process so they do not share the server's event
 * loop: `tsx bench/logs-viewers.ts <server url> <viewers>` connects that many socket.io
 * clients to the monitor, prints `ready` once each has its snapshot, and reads commands on
 * stdin: `sse <url>` follows a build log over server-sent events (counting bytes),
 * `report` prints one JSON line of what was received and exits.
 */
import { createInterface } from 'node:readline';
import { io, type Socket } from 'socket.io-client';
import type { MonitorClientEvents, MonitorServerEvents } from '../src/monitor/index.js';
import { readEvents } from '../test/support/event-stream.js';
import { summarize, type Summary } from './stats.js';

/** What the viewers saw, printed as JSON on `report`. */
export interface ViewersReport {
  /** over every "bench <n> <µs>" line and viewer: ms from the container writing it to a viewer receiving it */
  lag: Summary;
  /** log lines each viewer received, by viewer */
  linesPerViewer: number[];
  /** lines the server left out of batches (more than a batch holds), summed over viewers */
  skipped: number;
  /** bytes of log lines each SSE follower received, and whether it got the end event */
  sse: { bytes: number; ended: boolean }[];
}

const [url = '', count = '50'] = process.argv.slice(2);
const now = () => performance.timeOrigin + performance.now();
const lagsMs: number[] = [];
const linesPerViewer: number[] = [];
let skipped = 0;
const sse: { bytes: number; ended: boolean }[] = [];
const sockets: Socket<MonitorServerEvents, MonitorClientEvents>[] = [];

let ready = 0;
for (let i = 0; i < Number(count); i++) {
  const socket: Socket<MonitorServerEvents, MonitorClientEvents> = io(url, { path: '/socket.io', transports: ['websocket'], forceNew: true });
  linesPerViewer.push(0);
  socket.on('connect', () => socket.emit('watch', {}));
  socket.once('snapshot', () => {
    ready += 1;
    if (ready === Number(count)) process.stdout.write('ready\n');
  });
  socket.on('log', (delta) => {
    const received = now();
    linesPerViewer[i] = (linesPerViewer[i] ?? 0) + delta.lines.length;
    skipped += delta.skipped;
    for (const line of delta.lines) {
      const match = /^bench \d+ (\d+)$/.exec(line);
      if (match !== null) lagsMs.push(received - Number(match[1]) / 1000);
    }
  });
  sockets.push(socket);
}

async function follow(logUrl: string): Promise<void> {
  const entry = { bytes: 0, ended: false };
  sse.push(entry);
  const response = await fetch(logUrl, { headers: { accept: 'text/event-stream' } });
  if (response.body === null) return;
  for await (const event of readEvents(response.body)) {
    if (event.event === 'end') entry.ended = true;
    if (event.event === 'log') for (const line of JSON.parse(event.data) as string[]) entry.bytes += Buffer.byteLength(line) + 1;
  }
}

const commands = createInterface({ input: process.stdin });
commands.on('line', (line) => {
  if (line.startsWith('sse ')) {
    void follow(line.slice(4)).catch((err: unknown) => process.stderr.write(`sse: ${String(err)}\n`));
  } else if (line === 'report') {
    for (const socket of sockets) socket.close();
    const report: ViewersReport = { lag: summarize(lagsMs), linesPerViewer, skipped, sse };
    process.stdout.write(`${JSON.stringify(report)}\n`, () => process.exit(0));
  }
});
