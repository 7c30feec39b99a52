-- wrk script of `make bench-envoy` for configuration F: every request is the one in a file, sent as it is (a
-- POST of an MCP `tools/call` with its headers and body, written by the benchmark for each run).
--
--   wrk -t1 -c16 -d5s -s envoy/bench/mcp.lua http://127.0.0.1:PORT/mcp -- REQUEST_FILE

local raw = nil

function init(args)
  local f = assert(io.open(args[1], "rb"))
  raw = f:read("*a")
  f:close()
  if raw == nil or #raw == 0 then
    error("no request in " .. tostring(args[1]))
  end
end

function request()
  return raw
end
