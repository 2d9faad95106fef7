// BullMQ side of the scheduler peer benchmark: delayed jobs as durable timers.
//
//   node bullmq_bench.mjs --port 6379 --mode fire   --n 20000 --spread-min 0 --spread-max 5
//   node bullmq_bench.mjs --port 6379 --mode cancel --n 20000
//   node bullmq_bench.mjs --port 6379 --mode due    --n 20000 --rate 0 --lead 3
//
// Prints one JSON line on stdout. Same workload and output as arq_bench.py, so run_peers.py
// can put them side by side. Every wait has a deadline; a watchdog ends the process if the
// whole run overshoots --timeout.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { parseArgs } from "node:util";

// This process's own peak (VmHWM). Not resourceUsage().maxRSS: Linux carries ru_maxrss across
// fork and exec, so it reports the parent's peak when the parent was larger.
function ownPeakRss() {
  const line = readFileSync("/proc/self/status", "utf8").split("\n").find((l) => l.startsWith("VmHWM:"));
  return line ? Number(line.split(/\s+/)[1]) * 1024 : 0;
}

// bullmq lives in ./node/node_modules, next to this file, not in the project.
const require = createRequire(new URL("./node/package.json", import.meta.url));
const { Queue, Worker } = require("bullmq");
const BULLMQ_VERSION = require("bullmq/package.json").version;

const { values: a } = parseArgs({
  options: {
    port: { type: "string" },
    mode: { type: "string", default: "fire" }, // fire | cancel | due
    rate: { type: "string", default: "0" }, // due: timers falling due per second; 0 = all at once
    lead: { type: "string", default: "3" }, // due: s from the start to the first due time
    n: { type: "string", default: "20000" },
    "spread-min": { type: "string", default: "0" },
    "spread-max": { type: "string", default: "5" },
    batch: { type: "string", default: "1000" },
    concurrency: { type: "string", default: "50" },
    "drain-limit": { type: "string", default: "120" }, // s after the last due time
    timeout: { type: "string", default: "900" }, // s for the whole run
  },
});
const N = Number(a.n), BATCH = Number(a.batch), CONCURRENCY = Number(a.concurrency);
const SPREAD_MIN_MS = Number(a["spread-min"]) * 1000, SPREAD_MAX_MS = Number(a["spread-max"]) * 1000;
const DRAIN_LIMIT_MS = Number(a["drain-limit"]) * 1000;
const FAR_DELAY_MS = 3600 * 1000; // cancel mode: nothing may come due while we cancel
const connection = { host: "127.0.0.1", port: Number(a.port) };
const QUEUE = "bench";

setTimeout(() => {
  console.error(`bullmq_bench: --timeout ${a.timeout}s reached`);
  process.exit(3);
}, Number(a.timeout) * 1000).unref();

// Same deterministic, evenly spread delays as arq_bench.py (golden-ratio sequence), so both
// peers see the very same distribution over [spread-min, spread-max] without sharing a seed.
const GOLDEN = 0.6180339887498949;
const delayMs = (i) => Math.round(SPREAD_MIN_MS + (SPREAD_MAX_MS - SPREAD_MIN_MS) * ((i * GOLDEN) % 1));

const percentile = (sorted, p) =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : null;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function redisMemory(queue) {
  const info = await (await queue.client).info("memory");
  const field = (k) => Number(info.match(new RegExp(`^${k}:(\\d+)`, "m"))[1]);
  // dataset = used_memory less Redis' own overhead (client buffers, replication, ...).
  return { used: field("used_memory"), dataset: field("used_memory_dataset"), rss: field("used_memory_rss") };
}

// addBulk in batches; one batch in flight at a time, as a client that waits for its writes.
async function enqueue(queue, idPrefix, delayOf) {
  const started = performance.now();
  for (let i = 0; i < N; i += BATCH) {
    const jobs = [];
    for (let j = i; j < Math.min(N, i + BATCH); j++) {
      jobs.push({ name: "t", data: { i: j }, opts: { jobId: `${idPrefix}${j}`, delay: delayOf(j) } });
    }
    await queue.addBulk(jobs);
  }
  return (performance.now() - started) / 1000;
}

async function fire() {
  const queue = new Queue(QUEUE, { connection });
  const seen = new Set();
  const lateness = [];
  let duplicates = 0, lastProcessed = 0;
  // The worker runs before the first job is added, as a deployed consumer would.
  const worker = new Worker(
    QUEUE,
    async (job) => {
      const now = Date.now();
      if (seen.has(job.id)) duplicates++;
      seen.add(job.id);
      // BullMQ's own due time: the client-side timestamp at add plus the requested delay.
      lateness.push(now - (job.timestamp + job.opts.delay));
      lastProcessed = now;
    },
    { connection, concurrency: CONCURRENCY },
  );
  worker.on("error", (e) => console.error("worker error:", e.message));
  await worker.waitUntilReady();
  const before = await redisMemory(queue);

  const enqueueStartMs = Date.now();
  const enqueueS = await enqueue(queue, "f", delayMs);
  const afterEnqueue = await redisMemory(queue);
  const firstDue = enqueueStartMs + SPREAD_MIN_MS; // no job can be due earlier
  const deadline = Date.now() + SPREAD_MAX_MS + DRAIN_LIMIT_MS;
  while (seen.size < N && Date.now() < deadline) await sleep(20);

  await worker.close();
  const rssPeak = ownPeakRss();
  await queue.close();
  lateness.sort((x, y) => x - y);
  return {
    peer: "bullmq",
    version: BULLMQ_VERSION,
    mode: "fire",
    n: N,
    enqueue_s: enqueueS,
    enqueue_per_s: N / enqueueS,
    fired: seen.size,
    duplicates,
    fire_window_s: (lastProcessed - firstDue) / 1000,
    fire_per_s: seen.size / Math.max(1e-3, (lastProcessed - firstDue) / 1000),
    lateness_p50_ms: percentile(lateness, 50),
    lateness_p99_ms: percentile(lateness, 99),
    lateness_max_ms: lateness.length ? lateness[lateness.length - 1] : null,
    redis_used_before: before.used,
    redis_used_after_enqueue: afterEnqueue.used,
    redis_dataset_before: before.dataset,
    redis_dataset_after_enqueue: afterEnqueue.dataset,
    redis_rss_after_enqueue: afterEnqueue.rss,
    client_rss_peak: rssPeak,
  };
}

async function cancel() {
  const queue = new Queue(QUEUE, { connection });
  const before = await redisMemory(queue);
  const enqueueS = await enqueue(queue, "c", () => FAR_DELAY_MS);
  const afterEnqueue = await redisMemory(queue);

  // Cancel = remove the delayed job by id; one batch of parallel removes at a time.
  const started = performance.now();
  let removed = 0;
  for (let i = 0; i < N; i += BATCH) {
    const ids = [];
    for (let j = i; j < Math.min(N, i + BATCH); j++) ids.push(`c${j}`);
    const results = await Promise.all(ids.map((id) => queue.remove(id)));
    removed += results.filter((r) => r === 1).length;
  }
  const cancelS = (performance.now() - started) / 1000;
  const left = await queue.getDelayedCount();
  const rssPeak = ownPeakRss();
  await queue.close();
  return {
    peer: "bullmq",
    version: BULLMQ_VERSION,
    mode: "cancel",
    n: N,
    enqueue_s: enqueueS,
    enqueue_per_s: N / enqueueS,
    cancel_s: cancelS,
    cancel_per_s: removed / cancelS,
    cancelled: removed,
    left_pending: left,
    redis_used_before: before.used,
    redis_used_after_enqueue: afterEnqueue.used,
    redis_dataset_before: before.dataset,
    redis_dataset_after_enqueue: afterEnqueue.dataset,
    redis_rss_after_enqueue: afterEnqueue.rss,
    client_rss_peak: rssPeak,
  };
}

// Timer i due at firstDue + i / rate (all at firstDue when rate is 0), every one added before
// the first falls due: `rate` 0 is a backlog drain (time from the due moment until the last job
// started), a rate is steady lateness (job start - its due time). The worker starts once all are
// added, before the first is due: a worker running during addBulk slows the adding several-fold
// (each delayed job added wakes it), which is not what this measures.
async function due() {
  const queue = new Queue(QUEUE, { connection });
  const rate = Number(a.rate);
  const seen = new Set();
  const lateness = [];
  let duplicates = 0, lastProcessed = 0;
  const firstDue = Date.now() + Number(a.lead) * 1000;
  const dueOf = (i) => Math.round(firstDue + (rate > 0 ? (i * 1000) / rate : 0));
  let addedLate = 0;
  const started = performance.now();
  for (let i = 0; i < N; i += BATCH) {
    const jobs = [];
    const now = Date.now();
    for (let j = i; j < Math.min(N, i + BATCH); j++) {
      const at = dueOf(j);
      if (at <= now) addedLate++;
      jobs.push({ name: "t", data: { due: at }, opts: { jobId: `d${j}`, delay: Math.max(0, at - now) } });
    }
    await queue.addBulk(jobs);
  }
  const enqueueS = (performance.now() - started) / 1000;
  const worker = new Worker(
    QUEUE,
    async (job) => {
      const now = Date.now();
      if (seen.has(job.id)) duplicates++;
      seen.add(job.id);
      lateness.push(now - job.data.due);
      lastProcessed = now;
    },
    { connection, concurrency: CONCURRENCY },
  );
  worker.on("error", (e) => console.error("worker error:", e.message));
  await worker.waitUntilReady();
  const readyLate = Math.max(0, Date.now() - firstDue);
  const deadline = dueOf(N - 1) + DRAIN_LIMIT_MS;
  while (seen.size < N && Date.now() < deadline) await sleep(10);
  await worker.close();
  await queue.close();
  lateness.sort((x, y) => x - y);
  const window = (lastProcessed - firstDue) / 1000;
  return {
    peer: "bullmq",
    version: BULLMQ_VERSION,
    mode: "due",
    n: N,
    rate,
    enqueue_per_s: N / enqueueS,
    added_late: addedLate,
    worker_ready_late_ms: readyLate,
    fired: seen.size,
    duplicates,
    drain_s: window,
    drain_per_s: seen.size / Math.max(1e-3, window),
    lateness_p50_ms: percentile(lateness, 50),
    lateness_p99_ms: percentile(lateness, 99),
    lateness_max_ms: lateness.length ? lateness[lateness.length - 1] : null,
  };
}

const modes = { fire, cancel, due };
const result = await modes[a.mode]();
console.log(JSON.stringify(result));
process.exit(0);
