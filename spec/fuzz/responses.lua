-- The response fuzzer's cases: valid HTTP/1.1 responses, mutated at random.
-- Used on both sides: spec/fuzz/run.lua (the client: which options a case
-- uses) and spec/support/rawserver.lua, which loads this file as its script
-- and answers "GET /case/<n>/<hop>" with the steps of case n (hop > 0: the
-- target of a redirect). Everything follows from (seed, case, hop), so a case
-- plays the same again from its numbers alone (write timing aside).
local M = {}

-- splitmix64: a small, good generator over Lua 5.4 integers
local function mixer(...)
  local s = 0x9E3779B97F4A7C15
  for _, v in ipairs({ ... }) do s = (s ~ v) * 0xBF58476D1CE4E5B9 end
  local rng = {}
  function rng.next()
    s = s + 0x9E3779B97F4A7C15
    local z = s
    z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ~ (z >> 27)) * 0x94D049BB133111EB
    return z ~ (z >> 31)
  end
  function rng.int(lo, hi)        -- lo..hi inclusive
    return lo + (rng.next() >> 1) % (hi - lo + 1)
  end
  function rng.chance(p) return rng.int(1, 1000000) <= p * 1000000 end
  function rng.pick(list) return list[rng.int(1, #list)] end
  return rng
end
M.mixer = mixer

local MAX_BYTES = 2 * 1024 * 1024 -- a response's size, at most about this
local GZIP = "\31\139\8\0\0\0\0\0\2\3\171\86\202\207\86\178\42\41\42\77\213\81\74\175\82\178\50\172\5\0\228\250\166\143\18\0\0\0"
local DEFLATE = "\120\156\171\86\202\207\86\178\42\41\42\77\213\81\74\73\83\178\50\172\5\0\56\43\5\182"

local function chunked(body, pieces)
  local out, i = {}, 1
  local step = math.max(1, #body // math.max(1, pieces))
  while i <= #body do
    local part = body:sub(i, i + step - 1)
    out[#out + 1] = ("%x\r\n%s\r\n"):format(#part, part)
    i = i + step
  end
  return table.concat(out) .. "0\r\n\r\n"
end

local function head(status, reason, headers)
  local lines = { ("HTTP/1.1 %d %s"):format(status, reason) }
  for _, h in ipairs(headers) do lines[#lines + 1] = h end
  return table.concat(lines, "\r\n") .. "\r\n\r\n"
end

-- the valid responses every case starts from: fn(rng, case, hop) -> bytes
local BASES = {
  function() -- JSON with Content-Length
    local body = '{"ok":true,"items":[1,2,3],"text":"hello"}'
    return head(200, "OK", { "Content-Type: application/json", "Content-Length: " .. #body }) .. body
  end,
  function(rng) -- chunked JSON array
    local body = '[{"id":"1","data":"a"},{"id":"2","data":"b"}]'
    return head(200, "OK", { "Content-Type: application/json", "Transfer-Encoding: chunked" })
      .. chunked(body, rng.int(1, 6))
  end,
  function() return head(204, "No Content", {}) end,
  function() return head(304, "Not Modified", { "ETag: \"abc\"" }) end,
  function(_, case, hop) -- a redirect to the next hop of the same case
    return head(302, "Found", { ("Location: /case/%d/%d"):format(case, hop + 1), "Content-Length: 0" })
  end,
  function() -- 100 Continue, then the answer
    local body = '{"continued":true}'
    return "HTTP/1.1 100 Continue\r\n\r\n"
      .. head(200, "OK", { "Content-Type: application/json", "Content-Length: " .. #body }) .. body
  end,
  function() return head(200, "OK", { "Content-Encoding: gzip", "Content-Type: application/json",
    "Content-Length: " .. #GZIP }) .. GZIP end,
  function() return head(200, "OK", { "Content-Encoding: deflate", "Content-Length: " .. #DEFLATE }) .. DEFLATE end,
  function() -- HTTP/1.0, no length: the body runs to the close
    return "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nplain text to the end"
  end,
  function() -- many kinds of header
    local body = "{}"
    return head(200, "OK", { "Content-Type: application/json; charset=utf-8", "Set-Cookie: a=b; Path=/",
      "Set-Cookie: c=d", "ETag: W/\"x\"", "Last-Modified: Wed, 21 Oct 2015 07:28:00 GMT",
      "Retry-After: 5", "X-Repeat: 1", "X-Repeat: 2", "Content-Length: " .. #body }) .. body
  end,
  function() -- 503 with Retry-After as a date
    local body = "busy"
    return head(503, "Service Unavailable", { "Retry-After: Wed, 21 Oct 2015 07:28:00 GMT",
      "Content-Length: " .. #body }) .. body
  end,
  function(rng) -- a stream of server-sent events, chunked
    local ev = {}
    for i = 1, rng.int(1, 5) do ev[#ev + 1] = ("id: %d\nevent: m\ndata: {\"n\":%d}\n\n"):format(i, i) end
    return head(200, "OK", { "Content-Type: text/event-stream", "Transfer-Encoding: chunked" })
      .. chunked(table.concat(ev), rng.int(1, 4))
  end,
  function(rng) -- newline-delimited JSON with a length
    local lines = {}
    for i = 1, rng.int(1, 5) do lines[#lines + 1] = ('{"n":%d}'):format(i) end
    local body = table.concat(lines, "\n") .. "\n"
    return head(200, "OK", { "Content-Type: application/x-ndjson", "Content-Length: " .. #body }) .. body
  end,
  function() -- trailers after a chunked body
    return head(200, "OK", { "Transfer-Encoding: chunked", "Trailer: X-Sum" })
      .. "5\r\nhello\r\n0\r\nX-Sum: 5\r\n\r\n"
  end,
  function() -- a 401 with a body (auth)
    return head(401, "Unauthorized", { "WWW-Authenticate: Basic realm=\"x\"", "Content-Length: 4" }) .. "nope"
  end,
}

-- mutations: fn(rng, bytes) -> bytes
local function lines_of(s)
  local out = {}
  for line in (s .. "\r\n"):gmatch("(.-)\r\n") do out[#out + 1] = line end
  return out
end

local MUTATIONS = {
  function(rng, s) -- bit flips
    if #s == 0 then return s end
    for _ = 1, rng.int(1, 8) do
      local i = rng.int(1, #s)
      s = s:sub(1, i - 1) .. string.char(s:byte(i) ~ (1 << rng.int(0, 7))) .. s:sub(i + 1)
    end
    return s
  end,
  function(rng, s) -- truncation
    return s:sub(1, rng.int(0, #s))
  end,
  function(rng, s) -- byte insert, delete or replace
    for _ = 1, rng.int(1, 4) do
      local i = rng.int(1, #s + 1)
      local op = rng.int(1, 3)
      local c = string.char(rng.int(0, 255))
      if op == 1 then s = s:sub(1, i - 1) .. c .. s:sub(i)
      elseif op == 2 then s = s:sub(1, i - 1) .. s:sub(i + 1)
      else s = s:sub(1, i - 1) .. c .. s:sub(i + 1) end
    end
    return s
  end,
  function(rng, s) -- fold a header line (or the first one: the #7.1 shape)
    local hend = s:find("\r\n\r\n", 1, true)
    if not hend then return s end
    local first = s:find("\r\n", 1, true)
    if rng.chance(0.5) then
      return s:sub(1, first + 1) .. " X-Folded: yes\r\n" .. s:sub(first + 2)
    end
    local ls = lines_of(s:sub(1, hend - 1))
    local i = rng.int(1, #ls)
    ls[i] = ls[i] .. "\r\n" .. rng.pick({ " ", "\t", "  " }) .. "continued"
    return table.concat(ls, "\r\n") .. s:sub(hend)
  end,
  function(rng, s) -- duplicate a header line, up to thousands of times
    local hend = s:find("\r\n\r\n", 1, true)
    if not hend then return s end
    local ls = lines_of(s:sub(1, hend - 1))
    if #ls < 2 then return s end
    local i = rng.int(2, #ls)
    local n = rng.pick({ 1, 2, 10, 1000, rng.int(1, 5000) })
    n = math.min(n, MAX_BYTES // (#ls[i] + 2))
    ls[i] = (ls[i] .. "\r\n"):rep(n) .. ls[i]
    return table.concat(ls, "\r\n") .. s:sub(hend)
  end,
  function(rng, s) -- a huge value
    local hend = s:find("\r\n\r\n", 1, true)
    if not hend then return s end
    local size = rng.pick({ 1024, 65536, 100000, 102400, 131072, 300000, 1048576 })
    local name = rng.pick({ "X-Huge", "Content-Type", "Location", "Set-Cookie", "ETag", "Retry-After" })
    return s:sub(1, hend - 1) .. "\r\n" .. name .. ": " .. ("x"):rep(size) .. s:sub(hend)
  end,
  function(rng, s) -- lie about the length
    local v = rng.pick({ "0", "1", "-1", "99999999999999999999", "18446744073709551615", "abc",
      "5, 6", "1e3", " 7", tostring(rng.int(0, 100000)) })
    local t, n = s:gsub("Content%-Length: [^\r]*", "Content-Length: " .. v, 1)
    if n == 0 then
      local hend = s:find("\r\n\r\n", 1, true)
      if not hend then return s end
      t = s:sub(1, hend - 1) .. "\r\nContent-Length: " .. v .. s:sub(hend)
    end
    if rng.chance(0.3) then t = t:gsub("\r\n\r\n", "\r\nContent-Length: " .. rng.int(0, 50) .. "\r\n\r\n", 1) end
    return t
  end,
  function(rng, s) -- break the chunked framing
    local hend = s:find("\r\n\r\n", 1, true)
    if not hend then return s end
    local size = rng.pick({ "ffffffffffffffffff", "-1", "zz", "7fffffff", "0", "10000000", "" })
    local hdr = s:sub(1, hend - 1)
    if not hdr:find("chunked", 1, true) then hdr = hdr .. "\r\nTransfer-Encoding: chunked" end
    return hdr .. "\r\n\r\n" .. size .. "\r\n" .. ("y"):rep(rng.int(0, 64)) .. "\r\n"
  end,
  function(rng, s) -- line endings
    local pick = rng.int(1, 3)
    if pick == 1 then return (s:gsub("\r\n", "\n")) end
    if pick == 2 then return (s:gsub("\r\n", "\r", rng.int(1, 3))) end
    return (s:gsub("\r\n", "\n\r", 1))
  end,
  function(rng, s) -- NUL bytes and high bytes
    for _ = 1, rng.int(1, 4) do
      local i = rng.int(1, #s + 1)
      s = s:sub(1, i - 1) .. rng.pick({ "\0", "\255", "\192\128", "\0\0\0" }) .. s:sub(i)
    end
    return s
  end,
  function(rng, s) -- the status line
    local lines = { "HTTP/1.1 200 OK", "HTTP/2 200", "HTTP/0.9 200 OK", "HTTP/1.1 999 Odd",
      "HTTP/1.1 20 OK", "HTTP/1.1 -200 OK", "HTTP/1.1 200", "HTTP/1.1  200  OK", "http/1.1 200 OK",
      "HTTP/1.1 101 Switching Protocols", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue",
      "ICY 200 OK", "HTTP/1.1 200 OK\r\nHTTP/1.1 404 Nope: x", "HTTP/9.9 200 OK" }
    local first = s:find("\r\n", 1, true)
    return rng.pick(lines) .. (first and s:sub(first) or "\r\n")
  end,
  function(rng, s) -- a second response right behind, or a late one
    local extra = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled"
    if rng.chance(0.5) then return s .. extra end
    return s, extra
  end,
  function(rng, s) -- many 1xx before the answer
    return ("HTTP/1.1 100 Continue\r\n\r\n"):rep(rng.pick({ 2, 50, 1000 })) .. s
  end,
}

-- the steps of one response: split writes, then how the connection ends
local function steps_for(rng, bytes, late)
  local steps = {}
  local pieces = rng.chance(0.4) and rng.int(2, 12) or 1
  local at = 1
  for i = 1, pieces do
    local stop = i == pieces and #bytes or math.min(#bytes, at + rng.int(0, math.max(1, #bytes // pieces * 2)))
    if stop >= at then steps[#steps + 1] = { send = bytes:sub(at, stop) } end
    at = stop + 1
    if i < pieces then steps[#steps + 1] = { sleep = rng.pick({ 0, 0, 1, 5, 20 }) } end
  end
  if at <= #bytes then steps[#steps + 1] = { send = bytes:sub(at) } end
  if late then
    steps[#steps + 1] = { sleep = rng.pick({ 5, 50, 300 }) }
    steps[#steps + 1] = { send = late }
  end
  local ending = rng.int(1, 100)
  if ending <= 10 then steps[#steps + 1] = "close"
  elseif ending <= 15 then steps[#steps + 1] = "reset"
  elseif ending <= 18 then steps[#steps + 1] = "hold" end
  return steps
end

-- the raw bytes and timing of case `case`, hop `hop`
function M.case_steps(seed, case, hop)
  local rng = mixer(seed, case, hop, 1)
  local bytes = rng.pick(BASES)(rng, case, hop)
  local late
  if hop > 3 then return steps_for(rng, bytes) end  -- redirects end unmutated
  if not rng.chance(0.1) then                          -- 10 %: the valid response
    for _ = 1, rng.pick({ 1, 1, 1, 2, 3 }) do
      local b, l = rng.pick(MUTATIONS)(rng, bytes)
      bytes, late = b, l or late
      if #bytes > MAX_BYTES then break end
    end
  end
  return steps_for(rng, bytes, late)
end

-- the rawserver script: answers "/case/<n>/<hop>" and "/good"
function M.respond(line, _, args)
  local case, hop = line:match("^%u+ /case/(%d+)/(%d+)")
  if case then return M.case_steps(tonumber(args.seed), tonumber(case), tonumber(hop)) end
  local body = '{"good":true}'
  return { { send = ("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s")
    :format(#body, body) } }
end

-- the request options of case `case` (the client side)
local STREAMS = { "sse", "ndjson", "json-seq", "lines" }
function M.client_opts(seed, case, url)
  local rng = mixer(seed, case, 0, 2)
  local o = { url = url, timeout = 2, connect_timeout = 2 }
  if rng.chance(0.3) then o.method = "POST" o.body = { case = case } end
  o.decode = rng.pick({ "auto", "auto", "json", "none" })
  if rng.chance(0.2) then o.max_body = rng.pick({ 1, 16, 100, 4096 }) end
  if rng.chance(0.2) then o.follow_redirects = false end
  if rng.chance(0.2) then
    o.stream = rng.pick(STREAMS)
    if rng.chance(0.3) then o.max_message = rng.pick({ 8, 64, 1024 }) end
    if rng.chance(0.3) then o.max_queued = rng.pick({ 1, 2, 16 }) end
  end
  return o
end

return M
