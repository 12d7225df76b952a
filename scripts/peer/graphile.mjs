// Graphile Worker's half of the peer-queue bench (scripts/bench-peer.sh): a no-op task, measured
// the way benches/peer.rs measures TenantAtlas's engine, on the same PostgreSQL.
//   latency:    jobs added one at a time, `interval` ms apart, to an idle queue that a runner
//               works; enqueue → start is the time from `addJob` to the task being called.
//   throughput: `jobs` queued while no runner works, then one runner with `concurrency` starts;
//               jobs finished per second until the last one is done.
// Usage: node graphile.mjs <connection string> <jobs> <concurrency> <latency jobs> <interval ms>
// Prints one Markdown table row: queue, enqueue → start p50 / p99 (ms), jobs per second.
import { Logger, makeWorkerUtils, run } from "graphile-worker";

const [connectionString, jobsArg, concurrencyArg, latencyJobsArg, intervalArg] = process.argv.slice(2);
const jobs = Number(jobsArg);
const concurrency = Number(concurrencyArg);
const latencyJobs = Number(latencyJobsArg);
const interval = Number(intervalArg);
// Only errors are printed: the bench's output is its JSON line.
const logger = new Logger(() => (level, message) => {
  if (level === "error") console.error(message);
});

const utils = await makeWorkerUtils({ connectionString, logger });
await utils.migrate();

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Latency: the runner is up and idle; each job carries the time it was added.
const latencies = [];
let started = 0;
// A runner with `concurrency` jobs at once whose no-op task calls `onStart(payload)`.
function startRunner(onStart) {
  return run({
    connectionString,
    concurrency,
    noHandleSignals: true,
    pollInterval: 2000,
    logger,
    taskList: { noop: async (payload) => onStart(payload) },
  });
}

let runner = await startRunner((payload) => {
  latencies.push(performance.timeOrigin + performance.now() - payload.t);
  started += 1;
});
for (let i = 0; i < latencyJobs; i++) {
  await utils.addJob("noop", { t: performance.timeOrigin + performance.now() });
  await sleep(interval);
}
while (started < latencyJobs) await sleep(5);
await runner.stop();

// Throughput: queue everything first, then time one runner working it off.
await utils.withPgClient((client) =>
  client.query(
    "SELECT graphile_worker.add_job('noop', json_build_object('t', 0)) FROM generate_series(1, $1)",
    [jobs],
  ),
);
let done = 0;
let finished;
const allDone = new Promise((resolve) => (finished = resolve));
const begin = performance.now();
runner = await startRunner(() => {
  done += 1;
  if (done === jobs) finished();
});
await allDone;
// The last job counts once its completion is written, as ours does.
while (true) {
  const { rows } = await utils.withPgClient((client) =>
    client.query("SELECT COUNT(*)::int AS n FROM graphile_worker.jobs"),
  );
  if (rows[0].n === 0) break;
  await sleep(1);
}
const wall = (performance.now() - begin) / 1000;
await runner.stop();
await utils.release();
latencies.sort((a, b) => a - b);
const at = (p) => latencies[Math.min(latencies.length - 1, Math.round((latencies.length - 1) * p))];
console.log(
  `| Graphile Worker (no-op task) | ${at(0.5).toFixed(1)} / ${at(0.99).toFixed(1)} | ` +
    `${(jobs / wall).toFixed(0)} (${jobs} in ${wall.toFixed(1)} s) |`,
);
