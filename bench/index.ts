/**
 * `npm run bench`: every benchmark, one after another, each printing its figures and the
 * ratios it measures side by side. Needs what the tests need (scripts/host-setup.sh).
 * Pass names to run a subset: `npm run bench -- snapshots cache`.
 */
import { benchCacheHit, benchIncrementalC } from './cache.js';
import { benchCaches } from './caches.js';
import { benchChaos } from './chaos.js';
import { benchConfigReload } from './config.js';
import { benchHostile } from './hostile.js';
import { benchLoad } from './load.js';
import { benchLogs } from './logs.js';
import { benchSnapshots } from './snapshots.js';
import { benchStore } from './store.js';
import { benchStart } from './start.js';
import { benchWorkers } from './workers.js';

const benches: Record<string, () => Promise<void>> = {
  snapshots: benchSnapshots,
  cache: benchCacheHit,
  'incremental-c': benchIncrementalC,
  caches: benchCaches,
  logs: benchLogs,
  load: () => benchLoad(),
  chaos: benchChaos,
  config: () => benchConfigReload(),
  hostile: benchHostile,
  store: benchStore,
  start: benchStart,
  workers: benchWorkers,
};

const wanted = process.argv.slice(2);
for (const [name, run] of Object.entries(benches)) {
  if (wanted.length > 0 && !wanted.includes(name)) continue;
  await run();
}
