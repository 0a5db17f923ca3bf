-- wrk script for bench/wrk.py: POST /v1/incidents with pre-made bodies, each sent once.
--
--   wrk -t1 -c16 -d20s -s bench/wrk_ingest.lua http://127.0.0.1:8100 -- BODIES THREADS KEYED APIKEY
--
-- BODIES is a file of lines "<idempotency key>\t<json body>" (bench/wrk.py writes it); each
-- thread takes every THREADS-th line, so no body is sent by two threads. KEYED = "keys" sends
-- each line's key as Idempotency-Key. Every request is formatted once, in init; a thread
-- that runs out of bodies starts again from its first and counts it (a repeated body is an
-- identical repeat for the API and a refused duplicate for the baseline: bench/wrk.py makes
-- enough that it should never happen, and reports it if it does). done() prints one JSON line.

local counter = 0
local threads = {}

function setup(thread)
   thread:set("tid", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

function init(args)
   local path, nthreads, keyed, apikey = args[1], tonumber(args[2]), args[3] == "keys", args[4]
   requests = {}
   wrapped = 0
   idx = 0
   local n = 0
   for line in io.lines(path) do
      if n % nthreads == tid then
         local tab = line:find("\t", 1, true)
         local headers = {
            ["Content-Type"] = "application/json",
            ["Authorization"] = "Bearer " .. apikey,
         }
         if keyed then
            headers["Idempotency-Key"] = line:sub(1, tab - 1)
         end
         requests[#requests + 1] = wrk.format("POST", "/v1/incidents", headers, line:sub(tab + 1))
      end
      n = n + 1
   end
end

function request()
   idx = idx + 1
   if idx > #requests then
      idx = 1
      wrapped = wrapped + 1
   end
   return requests[idx]
end

function done(summary, latency, _requests)
   local wrapped_total = 0
   for _, thread in ipairs(threads) do
      wrapped_total = wrapped_total + thread:get("wrapped")
   end
   local e = summary.errors
   io.write(string.format(
      '{"wrk": true, "requests": %d, "duration_us": %d, "non_2xx_3xx": %d, "connect_errors": %d, ' ..
      '"read_errors": %d, "write_errors": %d, "timeouts": %d, "wrapped": %d, ' ..
      '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
      summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
      wrapped_total, latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max))
end
