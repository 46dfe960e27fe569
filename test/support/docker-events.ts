import Docker from 'dockerode';
import { BUILD_ID_LABEL } from '../../src/runner/index.js';

/**
 * Asks the Docker engine which build containers were created between `since` and `until`
 * (its own event log, not ours), and returns their build ids in order.
 */
export async function containersCreated(since: Date, until: Date = new Date()): Promise<string[]> {
  const docker = new Docker({ socketPath: '/var/run/docker.sock' });
  const stream = (await docker.getEvents({
    since: Math.floor(since.getTime() / 1000),
    until: Math.ceil(until.getTime() / 1000) + 1,
    filters: { type: ['container'], event: ['create'], label: [BUILD_ID_LABEL] },
  })) as NodeJS.ReadableStream;
  let text = '';
  for await (const chunk of stream) text += chunk.toString();
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => (JSON.parse(line) as { Actor: { Attributes: Record<string, string> } }).Actor.Attributes[BUILD_ID_LABEL] ?? '');
}

/**
 * Waits for the start of the next whole second and returns it: Docker filters events by
 * whole seconds, so a `since` taken this way excludes everything that happened before.
 */
export async function nextWholeSecond(): Promise<Date> {
  const next = Math.ceil((Date.now() + 1) / 1000) * 1000;
  await new Promise((r) => setTimeout(r, next - Date.now()));
  return new Date(next);
}
