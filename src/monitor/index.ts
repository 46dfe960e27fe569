export { createMonitorHub, type MonitorHub } from './monitor-hub.js';
export { toWaitingReasons } from './waiting-reasons.js';
export type {
  LogTail,
  MonitorBuildDelta,
  MonitorClientEvents,
  MonitorConfigDelta,
  MonitorConfigState,
  MonitorLogDelta,
  MonitorQueueDelta,
  MonitorServerEvents,
  MonitorSnapshot,
  MonitorWorker,
  MonitorWorkersDelta,
  WatchRequest,
} from './protocol.js';
