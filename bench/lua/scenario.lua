-- wrk script of bench/run.py: one scenario per wrk run, chosen by the arguments after `--`:
--
--   get  IDS_FILE              GET /products/<a random id from the file>   expects 200
--   list PATH                  GET PATH                                    expects 200
--   post CATEGORIES_FILE TAG   POST /products, a JSON body with a unique   expects 201
--                              name (TAG, thread number and a counter)
--
-- Every response's status is checked: done() prints BENCH_UNEXPECTED <count> and the
-- first unexpected status and body, so bench/run.py can fail loudly (wrk's own
-- "Non-2xx or 3xx" line does not count 3xx answers).

local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("thread_number", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

local function read_lines(path)
  local lines = {}
  for line in io.lines(path) do
    if line ~= "" then
      lines[#lines + 1] = line
    end
  end
  if #lines == 0 then
    error("no lines in " .. path)
  end
  return lines
end

function init(args)
  mode = args[1]
  unexpected = 0
  first_unexpected = nil
  sent = 0
  math.randomseed(os.time() + 7919 * (thread_number or 0))
  if mode == "get" then
    ids = read_lines(args[2])
    expected = 200
  elseif mode == "list" then
    list_request = wrk.format("GET", args[2])
    expected = 200
  elseif mode == "post" then
    categories = read_lines(args[2])
    tag = args[3] or "run"
    expected = 201
    wrk.headers["Content-Type"] = "application/json"
  else
    error("unknown scenario " .. tostring(mode))
  end
end

function request()
  if mode == "get" then
    return wrk.format("GET", "/products/" .. ids[math.random(#ids)])
  elseif mode == "list" then
    return list_request
  end
  sent = sent + 1
  local body = string.format(
    '{"name":"bench %s %d-%d","price":"%d.%02d","stock":%d,"category_id":"%s"}',
    tag, thread_number or 0, sent,
    math.random(1, 199), math.random(0, 99), math.random(0, 500),
    categories[math.random(#categories)]
  )
  return wrk.format("POST", "/products", nil, body)
end

function response(status, headers, body)
  if status ~= expected then
    unexpected = unexpected + 1
    if first_unexpected == nil then
      first_unexpected = tostring(status) .. " " .. string.sub(body or "", 1, 300)
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
