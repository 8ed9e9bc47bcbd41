-- wrk script of scripts/bench-http.sh. The mode comes from the environment:
--   BENCH_WRK_MODE=static   every request is the URL given to wrk (no per-request Lua,
--                           so the load generator stays as cheap as wrk can be)
--   BENCH_WRK_MODE=miss     GET BENCH_WRK_PATH with `&source_system=b<n>` appended,
--                           a new n per request: every request is a new cache key
--   BENCH_WRK_MODE=graphql  POST /graphql running BENCH_WRK_QUERY with {"s": "b<n>"}
-- BENCH_WRK_OFFSET separates the n of different runs (warm-up and measurement), so
-- no value repeats within a benchmark. done() prints one machine-readable line:
--   BENCH requests=... seconds=... rps=... p50_ms=... p99_ms=... errors=...

local mode = os.getenv("BENCH_WRK_MODE") or "static"
local offset = tonumber(os.getenv("BENCH_WRK_OFFSET") or "0")

local threads = {}
local counter = 0
local base = 0

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  -- 100 million values per thread and run: far more than one run can send.
  base = offset + (tid or 0) * 100000000
end

if mode == "miss" then
  local path = os.getenv("BENCH_WRK_PATH")
  function request()
    counter = counter + 1
    return wrk.format("GET", path .. "&source_system=b" .. (base + counter))
  end
elseif mode == "graphql" then
  local query = os.getenv("BENCH_WRK_QUERY")
  local headers = { ["Content-Type"] = "application/json" }
  function request()
    counter = counter + 1
    local body = '{"query":"' .. query .. '","variables":{"s":"b' .. (base + counter) .. '"}}'
    return wrk.format("POST", "/graphql", headers, body)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    "BENCH requests=%d seconds=%.3f rps=%.1f p50_ms=%.3f p99_ms=%.3f errors=%d\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.connect + e.read + e.write + e.status + e.timeout))
end
