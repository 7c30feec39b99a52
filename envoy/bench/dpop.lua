-- wrk script of `make bench-envoy` for configuration C3: every request carries the one DPoP-bound token
-- (`Authorization: DPoP <token>`, a warm token cache) and the next proof of a file (one proof a line) in its
-- `DPoP` header, so no proof is sent twice while the file lasts (a repeated one is refused as a replay); after
-- its last line it starts again and counts the wrap (printed at the end). The benchmark writes a file of fresh
-- proofs for each run.
--
--   wrk -t1 -c16 -d5s -s envoy/bench/dpop.lua http://127.0.0.1:PORT/quotes/ACME -- PROOF_FILE TOKEN

proofs = {}
next_proof = 1
wraps = 0
authorization = nil

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      proofs[#proofs + 1] = line
    end
  end
  if #proofs == 0 then
    error("no proofs in " .. tostring(args[1]))
  end
  if args[2] == nil or #args[2] == 0 then
    error("no token: wrk ... -- PROOF_FILE TOKEN")
  end
  authorization = "DPoP " .. args[2]
end

function request()
  local proof = proofs[next_proof]
  next_proof = next_proof + 1
  if next_proof > #proofs then
    next_proof = 1
    wraps = wraps + 1
  end
  return wrk.format("GET", nil, { ["Authorization"] = authorization, ["DPoP"] = proof })
end

local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    io.write(string.format("proof file wraps: %d\n", thread:get("wraps")))
  end
end
