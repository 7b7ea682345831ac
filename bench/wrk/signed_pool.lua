-- wrk script: POST a different pre-signed gridX event on every request.
-- BENCH_POOL names a file of "<sha512 hex>\t<json body>" lines; thread N reads "<pool>.N" so
-- no two threads (and no two requests) send the same event id. done() prints one JSON line.

local pool_path = os.getenv("BENCH_POOL")
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end

function init(args)
  sigs, bodies = {}, {}
  local f = assert(io.open(pool_path .. "." .. tid, "r"))
  for line in f:lines() do
    local tab = line:find("\t", 1, true)
    if tab then
      sigs[#sigs + 1] = line:sub(1, tab - 1)
      bodies[#bodies + 1] = line:sub(tab + 1)
    end
  end
  f:close()
  sent, wrapped, non2xx = 0, 0, 0
end

function request()
  sent = sent + 1
  local i = sent
  if i > #bodies then
    wrapped = wrapped + 1
    i = ((i - 1) % #bodies) + 1
  end
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["X-Signature"] = "sha512=" .. sigs[i],
  }, bodies[i])
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local w, bad = 0, 0
  for _, t in ipairs(threads) do
    w = w + (t:get("wrapped") or 0)
    bad = bad + (t:get("non2xx") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,'
      .. '"max_us":%d,"mean_us":%.1f,"errors_connect":%d,"errors_read":%d,"errors_write":%d,'
      .. '"errors_status":%d,"errors_timeout":%d,"wrapped":%d,"non2xx":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, e.connect, e.read, e.write, e.status,
    e.timeout, w, bad))
end
