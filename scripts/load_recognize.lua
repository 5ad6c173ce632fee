-- wrk script: POST one JPEG to /v1/recognize/image, over and over.
--
-- Environment: VISAGE_KEY (an API key with the recognize scope), PROBE (the JPEG file).
-- Every answer is checked: a status other than 200, or a 200 whose body does not name a
-- match, is counted; `done` prints one summary line that scripts/load_recognize.sh parses
-- (wrk's own "Non-2xx" line is printed only when there are some).

local key = os.getenv("VISAGE_KEY")
local probe = os.getenv("PROBE")
assert(key and key ~= "", "set VISAGE_KEY")
assert(probe and probe ~= "", "set PROBE to a JPEG file")
local f = assert(io.open(probe, "rb"))
local jpeg = f:read("*a")
f:close()

wrk.method = "POST"
wrk.path = "/v1/recognize/image"
wrk.body = jpeg
wrk.headers["Content-Type"] = "image/jpeg"
wrk.headers["Authorization"] = "Bearer " .. key

-- Each wrk thread has its own Lua state: keep the threads to add their counts up at the end.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  not_ok = 0
  no_match = 0
end

function response(status, headers, body)
  if status ~= 200 then
    not_ok = not_ok + 1
  elseif not string.find(body, '"match":true', 1, true) then
    no_match = no_match + 1
  end
end

function done(summary, latency, requests)
  local bad, unmatched = 0, 0
  for _, t in ipairs(threads) do
    bad = bad + t:get("not_ok")
    unmatched = unmatched + t:get("no_match")
  end
  local e = summary.errors
  io.write(string.format(
    "visage-wrk requests=%d non200=%d unmatched=%d connect=%d read=%d write=%d timeout=%d status=%d " ..
    "p50_ms=%.1f p90_ms=%.1f p99_ms=%.1f max_ms=%.1f duration_s=%.2f\n",
    summary.requests, bad, unmatched, e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, summary.duration / 1e6))
end
