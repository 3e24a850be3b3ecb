-- wrk script for scripts/bench.sh: counts every answer by its status, so
-- that a case answering anything but its expected status fails the bench
-- (wrk itself only counts "non-2xx or 3xx"). Every case runs with it, so its
-- cost in wrk's threads is the same for all. Prints, after wrk's summary:
--   STATUS <status>=<count> ...
--   ERRORS connect=<n> read=<n> write=<n> timeout=<n>
counts = {}

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("counts")) do
      total[status] = (total[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(total) do
    table.insert(parts, status .. "=" .. n)
  end
  table.sort(parts)
  io.write("STATUS " .. table.concat(parts, " ") .. "\n")
  local e = summary.errors
  io.write(string.format("ERRORS connect=%d read=%d write=%d timeout=%d\n",
    e.connect, e.read, e.write, e.timeout))
end
