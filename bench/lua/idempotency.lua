-- wrk script of bench/idempotency.py: POST /orders with and without Idempotency-Key.
-- The arguments after `--` are MODE TAG [KEYS_FILE]:
--
--   plain   no Idempotency-Key; a new order per request           expects 201, no
--                                                                 Idempotency-Key-Expires
--   keyed   a new key on every request, as a client sends one     expects 201 with
--           per operation: "TAG-<thread>-<random>-<counter>"      Idempotency-Key-Expires,
--           (a Structured Field String, quoted)                   not replayed
--   replay  a key of KEYS_FILE at random, with the body it was    expects 201 with
--           first sent with (lines: KEY<TAB>JSON body)            Idempotent-Replayed: true
--
-- Every response is checked: done() prints BENCH_UNEXPECTED <count> and the first
-- unexpected answer, as bench/lua/scenario.lua does, so bench/run.py fails loudly.

local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("thread_number", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

-- 8 random bytes as hex: keys stay unique across runs that share a tag (warm-ups) and
-- across runs started within the same second.
local function nonce()
  local source = assert(io.open("/dev/urandom", "rb"))
  local bytes = source:read(8)
  source:close()
  return (bytes:gsub(".", function(c) return string.format("%02x", string.byte(c)) end))
end

local function read_replays(path)
  local replays = {}
  for line in io.lines(path) do
    local key, body = line:match("^([^\t]+)\t(.+)$")
    if key ~= nil then
      replays[#replays + 1] = { key = '"' .. key .. '"', body = body }
    end
  end
  if #replays == 0 then
    error("no KEY<TAB>body lines in " .. path)
  end
  return replays
end

function init(args)
  mode = args[1]
  tag = args[2] or "run"
  unexpected = 0
  first_unexpected = nil
  sent = 0
  local seed = nonce()
  math.randomseed(tonumber(seed:sub(1, 8), 16) + 7919 * (thread_number or 0))
  prefix = string.format('"%s-%d-%s-', tag, thread_number or 0, seed)
  headers = { ["Content-Type"] = "application/json" }
  if mode == "replay" then
    replays = read_replays(args[3])
  elseif mode ~= "plain" and mode ~= "keyed" then
    error("unknown mode " .. tostring(mode))
  end
end

function request()
  if mode == "replay" then
    local replay = replays[math.random(#replays)]
    headers["Idempotency-Key"] = replay.key
    return wrk.format("POST", nil, headers, replay.body)
  end
  sent = sent + 1
  local body = string.format(
    '{"customer":"bench %s %d-%d","total":"%d.%02d","quantity":%d}',
    tag, thread_number or 0, sent, math.random(1, 999), math.random(0, 99), math.random(1, 20)
  )
  if mode == "keyed" then
    headers["Idempotency-Key"] = prefix .. sent .. '"'
  end
  return wrk.format("POST", nil, headers, body)
end

-- Header names as the server sent them; compared without case.
local function header(received, name)
  for key, value in pairs(received) do
    if string.lower(key) == name then
      return value
    end
  end
  return nil
end

local function problem(status, received)
  local replayed = header(received, "idempotent-replayed")
  local expires = header(received, "idempotency-key-expires")
  if status ~= 201 then
    return "status " .. tostring(status)
  elseif mode == "replay" then
    if replayed ~= "true" then
      return "not replayed (Idempotent-Replayed: " .. tostring(replayed) .. ")"
    end
  elseif replayed ~= nil then
    return "replayed (Idempotent-Replayed: " .. replayed .. ")"
  elseif mode == "keyed" and expires == nil then
    return "no Idempotency-Key-Expires: the key was not honoured"
  elseif mode == "plain" and expires ~= nil then
    return "Idempotency-Key-Expires without a key"
  end
  return nil
end

function response(status, received, body)
  local wrong = problem(status, received)
  if wrong ~= nil then
    unexpected = unexpected + 1
    if first_unexpected == nil then
      first_unexpected = tostring(status) .. " " .. wrong .. ": " .. string.sub(body or "", 1, 300)
    end
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + (thread:get("unexpected") or 0)
    local sample = thread:get("first_unexpected")
    if sample ~= nil then
      io.write("BENCH_FIRST_UNEXPECTED " .. sample .. "\n")
    end
  end
  io.write(string.format("BENCH_UNEXPECTED %d\n", total))
end
