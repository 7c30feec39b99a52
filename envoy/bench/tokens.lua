-- wrk script of `make bench-envoy` for configurations C' and C'': every request carries the next token of a
-- file (one token a line), so no token is sent twice while the file lasts; after its last line it starts
-- again and counts the wrap (printed at the end). The benchmark writes a file of fresh tokens for each run.
--
--   wrk -t1 -c16 -d5s -s envoy/bench/tokens.lua http://127.0.0.1:PORT/quotes/ACME -- TOKEN_FILE

tokens = {}
next_token = 1
wraps = 0

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      tokens[#tokens + 1] = line
    end
  end
  if #tokens == 0 then
    error("no tokens in " .. tostring(args[1]))
  end
end

function request()
  local token = tokens[next_token]
  next_token = next_token + 1
  if next_token > #tokens then
    next_token = 1
    wraps = wraps + 1
  end
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. token })
end

local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    io.write(string.format("token file wraps: %d\n", thread:get("wraps")))
  end
end
