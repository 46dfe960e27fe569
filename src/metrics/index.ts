export { createMetrics, type Metrics } from './metrics.js';
export { createWorkerMetrics, type WorkerMetrics } from './worker-metrics.js';
