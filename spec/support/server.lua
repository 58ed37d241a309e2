-- Test HTTP/1.1 server for lua-longpoll specs and benchmarks.
--
--   lua5.4 spec/support/server.lua [--port N] [--parent PID]
--
-- Listens on 127.0.0.1 (port 0 = ephemeral), prints exactly one line "PORT <n>" to stdout,
-- then serves until SIGTERM/SIGINT (exit 0). With --parent PID it also exits when that
-- process is gone, so a crashed test run leaves no server behind.
-- A fixture for the specs, not a product: it speaks what libcurl sends the module's way.
-- Single-threaded luv event loop; keep-alive (a connection's requests one after another);
-- request bodies by Content-Length (the module always gives libcurl the length: no chunked
-- request bodies, no "Expect: 100-continue", which libcurl sends only past 1 MiB).
-- Query strings are form-decoded (%XX and "+" -> space).
--
-- Endpoints (any method unless said). "held" = counted in /_stats "held" while waiting.
--   /echo                      200 JSON {method, path, query (raw, "" if none), args, headers
--                              (lowercased; repeats joined ", "), body, version}
--   /json /text /jsonish /garbage   fixed bodies (see route)
--   /headers                   200 text/plain "headers" with X-Repeat: a, X-Repeat: b, X-MiXeD: MixedCase
--   /hold?ms=&status=&body=&type=&etag=   held ms (absent: until the client leaves), then
--                              status (default 204, or 200 when body given) with body,
--                              Content-Type type (default text/plain), ETag etag (verbatim)
--   /status/N                  N with JSON {"status":N}; 204/304 without body
--   /empty?status=S            S (default 200), Content-Length: 0
--   /big?bytes=N&chunked=1     N (default 1 MiB) bytes 'x', written with backpressure
--   /reset /truncated          Content-Length: 100000, 1000 bytes, then RST (after 50 ms) / FIN
--   /endless?chunk=&interval_ms=   held; chunked 'x' chunks (default 16384 bytes) forever
--   /drip?bytes=N&interval_ms=M    held; Content-Length N (10), one 'x' every M ms (100)
--   /silence                   held; never answers   /close   FIN without response
--   /stream/<fmt>?n=&size=&chunk=&interval_ms=&retry=&bom=1&end=0   (fmt: ndjson,
--                              json-seq, lines, sse) held; chunked: messages 1..n (10)
--                              {"n":i,"pad":"pp.."} of about `size` bytes (32), as NDJSON lines,
--                              RS-prefixed texts, plain lines or SSE events (id: i, event: tick,
--                              data: <json>; after a Last-Event-ID: L request header from L+1;
--                              retry=R sends "retry: R" first), cut into HTTP chunks of `chunk`
--                              bytes (0: 256 KiB) written one at a time, interval_ms apart;
--                              then the end of the body, or with end=0 held until the client
--                              leaves. bom=1 starts with a UTF-8 BOM
--   /sse/<ch>?close_after=&retry=   held; SSE of channel <ch> (see /publish): every message
--                              with id > Last-Event-ID (0) as "id: <id>\ndata: <data>\n\n", as
--                              it is published; ends the body after close_after events
--   /redirect?to=&status=      S (302) Location: to (default /json)
--   /auth?type=basic|digest    401 with a WWW-Authenticate challenge of that type (default
--                              basic) until a request has an Authorization header; then 200
--                              JSON {authorization = <that header>} (credentials not checked)
--   /redirect-loop?n=K         302 -> /redirect-loop?n=K+1      /redirect-file  302 -> file:///etc/passwd
--   POST|PUT /publish/<ch>     body = one message, or a JSON array of strings = a burst;
--                              -> {"id":"<last id>"}; wakes parked requests
--   /poll/<ch>?since=&timeout_ms=&limit=&empty=   (fields also from a JSON body object)
--                              [{"id":"3","data":"..."}] for ids > since (default 0); else held
--                              up to timeout_ms (30000) then 200 [] or status `empty`, no body
--   /tg/<ch>/getUpdates?offset=&timeout=&limit=   (also JSON body) {"ok":true,"result":
--                              [{"update_id":N,"message":{"text":..}}]} for ids >= offset;
--                              held up to timeout seconds (default 0)
--   /kv/<ch>?index=&wait=      X-Consul-Index: last id (1 when empty); ids > index; held up to
--                              wait ("5s", "500ms", "1m"; default 5m) when index is given and
--                              nothing is newer; an index above the last id waits for the next
--   /v2/keys/<key>             etcd's v2 keys API, one global index, the last ETCD_HISTORY (20)
--                              events kept: PUT ?value= (or form body value=) sets; GET reads
--                              (404 errorCode 100 when unset); GET ?wait=true[&waitIndex=N]
--                              answers the first event of the key with modifiedIndex >= N at
--                              once, else holds with no timeout (as etcd does) for the next
--                              one; N below the history: 400 errorCode 401 (cleared). Answers
--                              carry X-Etcd-Index (the current index)
--   POST /_fail {mode, count, retry_after, ms}   queue a failure for the next `count` (1)
--                              requests to /poll /tg /kv /v2/keys: mode "503"/"429"/any status,
--                              "reset" (RST), "close" (FIN); "refuse" closes the listening
--                              socket at once for ms (1000) ms
--   /_stats                    {held, open, total, hits{path=n}, listening, pending_failures};
--                              /_* requests are not counted in total/hits; open includes the
--                              connection asking
--   POST /_reset               clears channels (parked polls answered empty), hits, failures

local uv = require "luv"
local cjson = require "cjson"
local cjson_safe = require "cjson.safe"

local HOST = "127.0.0.1"
local MAX_HEAD = 64 * 1024              -- request line + headers
local MAX_BODY = 16 * 1024 * 1024       -- request body
local BIG_CHUNK = 256 * 1024            -- /big write size
local XS = string.rep("x", BIG_CHUNK)

---------------------------------------------------------------------------------------------
-- arguments
---------------------------------------------------------------------------------------------
local opt_port, opt_parent = 0, nil
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    local k, v = a:match("^%-%-(%w+)=(.*)$")
    if not k then k, v = a:match("^%-%-(%w+)$"), arg[i + 1]; i = i + 1 end
    if k == "port" then opt_port = tonumber(v)
    elseif k == "parent" then opt_parent = tonumber(v)
    else io.stderr:write("server.lua: unknown argument ", tostring(a), "\n"); os.exit(2) end
    if not (k == "port" and opt_port) and not (k == "parent" and opt_parent) then
      io.stderr:write("server.lua: bad value for --", k, "\n"); os.exit(2)
    end
    i = i + 1
  end
end

-- Close sockets inherited from the process that started us (e.g. a test runner's open client
-- connections): holding a duplicate would keep those connections from ever closing.
do
  local ok, entries = pcall(uv.fs_scandir, "/proc/self/fd")
  if ok and entries then
    local fds = {}
    while true do
      local name = uv.fs_scandir_next(entries)
      if not name then break end
      fds[#fds + 1] = tonumber(name)
    end
    for _, fd in ipairs(fds) do
      if fd and fd > 2 then
        local target = uv.fs_readlink("/proc/self/fd/" .. fd)
        if target and target:match("^socket:") then uv.fs_close(fd) end
      end
    end
  end
end

---------------------------------------------------------------------------------------------
-- state
---------------------------------------------------------------------------------------------
local stats = { held = 0, open = 0, total = 0, connections = 0, hits = {} }
local conns = {}          -- conn -> true
local channels = {}       -- name -> { msgs = {data...}, last = n, waiters = {waiter -> true} }
local failures = {}       -- queue of { mode=, count=, retry_after= }
local listener, listening, port = nil, false, nil
local refuse_timer = nil

local REASON = {
  [100] = "Continue", [200] = "OK", [201] = "Created", [202] = "Accepted", [204] = "No Content",
  [206] = "Partial Content", [301] = "Moved Permanently", [302] = "Found", [303] = "See Other",
  [304] = "Not Modified", [307] = "Temporary Redirect", [308] = "Permanent Redirect",
  [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
  [405] = "Method Not Allowed", [408] = "Request Timeout", [413] = "Content Too Large",
  [418] = "I'm a teapot", [429] = "Too Many Requests", [431] = "Request Header Fields Too Large",
  [500] = "Internal Server Error", [501] = "Not Implemented", [502] = "Bad Gateway",
  [503] = "Service Unavailable", [504] = "Gateway Timeout",
}

local function log(...)
  io.stderr:write("server.lua: ", table.concat({ ... }, " "), "\n")
end

local function now_ms() return uv.now() end

local function close_handle(h)
  if h and not h:is_closing() then h:close() end
end

-- luv exits the process on an error raised in a callback: never let one escape
local function safe(fn)
  return function(...)
    local ok, err = pcall(fn, ...)
    if not ok then log("callback error:", tostring(err)) end
  end
end

local function new_timer(ms, fn)
  local t = uv.new_timer()
  t:start(math.max(0, math.floor(ms)), 0, safe(function()
    close_handle(t)
    fn()
  end))
  return t
end

---------------------------------------------------------------------------------------------
-- helpers
---------------------------------------------------------------------------------------------
local function pct_decode(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function parse_query(q)
  local args = {}
  if q == nil or q == "" then return args end
  for pair in q:gmatch("[^&;]+") do
    local k, v = pair:match("^([^=]*)=(.*)$")
    if not k then k, v = pair, "" end
    args[pct_decode(k)] = pct_decode(v)
  end
  return args
end

local function json_array(items) return "[" .. table.concat(items, ",") .. "]" end

-- decodes a JSON object request body; returns a table (possibly empty)
local function body_fields(req)
  if req.body and req.body:match("^%s*{") then
    local t = cjson_safe.decode(req.body)
    if type(t) == "table" then return t end
  end
  return {}
end

local function field(req, name)
  local v = req.args[name]
  if v == nil then
    req.fields = req.fields or body_fields(req)
    v = req.fields[name]
    if v == cjson.null then v = nil end
  end
  return v
end

local function num_field(req, name, default)
  local v = field(req, name)
  if v == nil or v == "" then return default end
  return tonumber(v)
end

---------------------------------------------------------------------------------------------
-- connections
---------------------------------------------------------------------------------------------
local process -- forward

local function hold(req)
  if not req.held then req.held = true; stats.held = stats.held + 1 end
end

local function unhold(req)
  if req.held then req.held = false; stats.held = stats.held - 1 end
end

-- how = "fin" (shutdown after queued writes, then close), "reset" (RST), "now"
local function close_conn(conn, how)
  if conn.closed then return end
  conn.closed = true
  conns[conn] = nil
  stats.open = stats.open - 1
  local req = conn.req
  conn.req = nil
  if req then
    req.done = true
    if req.on_close then pcall(req.on_close) end
    unhold(req)
  end
  local tcp = conn.tcp
  if tcp:is_closing() then return end
  pcall(tcp.read_stop, tcp)
  if how == "reset" then
    local ok = pcall(tcp.close_reset, tcp)
    if not ok then close_handle(tcp) end
  elseif how == "fin" then
    local t
    local ok = pcall(tcp.shutdown, tcp, safe(function() close_handle(t); close_handle(tcp) end))
    if not ok then close_handle(tcp); return end
    -- in case the shutdown never completes (peer not reading), close anyway
    t = new_timer(5000, function() close_handle(tcp) end)
  else
    close_handle(tcp)
  end
end

local function write(conn, data, cb)
  if conn.closed then return false end
  local ok, err = pcall(conn.tcp.write, conn.tcp, data, safe(function(werr)
    if werr then close_conn(conn, "now"); return end
    if cb and not conn.closed then cb() end
  end))
  if not ok or err == nil then close_conn(conn, "now"); return false end
  return true
end

-- the request is over: next request on a keep-alive connection, or close
local function finish(req)
  if req.done then return end
  req.done = true
  unhold(req)
  local conn = req.conn
  if conn.req == req then conn.req = nil end
  if conn.closed then return end
  if not req.keepalive then
    close_conn(conn, "fin")
  else
    process(conn)
  end
end

local function head_string(req, status, headers, extra)
  local out = { ("HTTP/1.1 %d %s\r\n"):format(status, REASON[status] or "Status") }
  for _, h in ipairs(headers) do out[#out + 1] = h[1] .. ": " .. h[2] .. "\r\n" end
  if not req.keepalive then out[#out + 1] = "Connection: close\r\n" end
  if extra then out[#out + 1] = extra end
  out[#out + 1] = "\r\n"
  return table.concat(out)
end

-- a complete response; headers is a list of {name, value}
local function respond(req, status, headers, body, ctype)
  if req.done then return end
  headers = headers or {}
  body = body or ""
  local nobody = status == 204 or status == 304 or status < 200
  if ctype and not nobody then table.insert(headers, 1, { "Content-Type", ctype }) end
  if nobody then
    body = ""
  elseif not req.no_length then
    headers[#headers + 1] = { "Content-Length", tostring(#body) }
  end
  local data = head_string(req, status, headers)
  if req.method ~= "HEAD" then data = data .. body end
  write(req.conn, data)
  finish(req)
end

local function respond_json(req, status, value, headers)
  local body = type(value) == "string" and value or cjson.encode(value)
  respond(req, status, headers, body, "application/json")
end

---------------------------------------------------------------------------------------------
-- listening
---------------------------------------------------------------------------------------------
local on_request -- forward

local function on_connection(err)
  if err then log("accept:", err); return end
  local tcp = uv.new_tcp()
  if not tcp then return end
  if not pcall(listener.accept, listener, tcp) then close_handle(tcp); return end
  pcall(tcp.nodelay, tcp, true)
  local conn = { tcp = tcp, buf = "", parts = {}, buflen = 0, closed = false }
  conns[conn] = true
  stats.open = stats.open + 1
  stats.connections = stats.connections + 1
  tcp:read_start(safe(function(rerr, data)
    if conn.closed then return end
    if rerr or not data then close_conn(conn, "now"); return end
    conn.parts[#conn.parts + 1] = data
    conn.buflen = conn.buflen + #data
    if conn.buflen > MAX_BODY + MAX_HEAD then close_conn(conn, "now"); return end
    process(conn)
  end))
end

local function listen()
  local tcp = uv.new_tcp()
  local ok, err = tcp:bind(HOST, port or opt_port)
  if not ok then close_handle(tcp); return nil, err end
  ok, err = tcp:listen(4096, safe(on_connection))
  if not ok then close_handle(tcp); return nil, err end
  listener, listening = tcp, true
  port = tcp:getsockname().port
  return true
end

-- close the listening socket for ms milliseconds (new connections refused, existing kept)
local function refuse(ms)
  if refuse_timer then close_handle(refuse_timer); refuse_timer = nil end
  if listening then close_handle(listener); listener, listening = nil, false end
  local deadline = now_ms() + ms + 5000
  local function again()
    refuse_timer = nil
    local ok, err = listen()
    if not ok then
      if now_ms() > deadline then log("cannot listen again:", tostring(err)); return end
      refuse_timer = new_timer(20, again)
    end
  end
  refuse_timer = new_timer(ms, again)
end

---------------------------------------------------------------------------------------------
-- request parsing
---------------------------------------------------------------------------------------------
local function take_all(conn)
  if #conn.parts > 0 then
    conn.buf = conn.buf .. table.concat(conn.parts)
    conn.parts = {}
  end
  return conn.buf
end

local function consume(conn, n)
  conn.buf = conn.buf:sub(n + 1)
  conn.buflen = #conn.buf
end

local function bad_request(conn, status, why)
  local req = { conn = conn, keepalive = false, method = "GET", version = "HTTP/1.1" }
  conn.req = req
  respond(req, status, nil, why .. "\n", "text/plain")
end

-- handles one request at a time per connection; the next one once it is answered
function process(conn)
  if conn.in_process then conn.again = true; return end
  conn.in_process = true
  local guard = 0
  repeat
    conn.again = false
    guard = guard + 1
    while not conn.closed and not conn.req and conn.buflen > 0 and guard < 100000 do
      guard = guard + 1
      local pend = conn.pending
      if not pend then
        local buf = take_all(conn)
        local head_end = buf:find("\r\n\r\n", 1, true)
        if not head_end then
          if #buf > MAX_HEAD then bad_request(conn, 431, "request head too large")
          elseif buf:find("^[^%u\r\n]") then bad_request(conn, 400, "not HTTP (a TLS hello?)") end
          break
        end
        if head_end > MAX_HEAD then bad_request(conn, 431, "request head too large"); break end
        local head = buf:sub(1, head_end - 1)
        consume(conn, head_end + 3)
        -- tolerate stray empty lines between requests
        head = head:gsub("^[\r\n]+", "")
        local line, rest = head:match("^([^\r\n]*)\r?\n?(.*)$")
        local method, target, version = line:match("^(%u+) (%S+) (HTTP/%d%.%d)$")
        if not method then bad_request(conn, 400, "bad request line"); break end
        local headers = {}
        local bad = false
        for hl in (rest .. "\r\n"):gmatch("([^\r\n]*)\r\n") do
          if hl ~= "" then
            local name, value = hl:match("^([^:%s]+):%s*(.-)%s*$")
            if not name then bad = true; break end
            name = name:lower()
            if headers[name] then headers[name] = headers[name] .. ", " .. value
            else headers[name] = value end
          end
        end
        if bad then bad_request(conn, 400, "bad header"); break end
        local path, query = target:match("^([^?#]*)%??([^#]*)")
        local keepalive = not (headers["connection"] or ""):lower():find("close", 1, true)
        pend = {
          conn = conn, method = method, target = target, path = path,
          query = query, raw_query = target:find("?", 1, true) and query or nil,
          version = version, headers = headers, keepalive = keepalive,
        }
        if headers["transfer-encoding"] then
          bad_request(conn, 501, "request bodies come with a Content-Length here"); break
        end
        local cl = headers["content-length"]
        pend.need = 0
        if cl then
          pend.need = tonumber(cl:match("^%d+$") or "")
          if not pend.need then bad_request(conn, 400, "bad content-length"); break end
          if pend.need > MAX_BODY then bad_request(conn, 413, "body too large"); break end
        end
        conn.pending = pend
      end
      -- body
      if conn.buflen < pend.need then break end
      local buf = take_all(conn)
      pend.body = buf:sub(1, pend.need)
      consume(conn, pend.need)
      conn.pending = nil
      conn.req = pend
      local ok, err = pcall(on_request, pend)
      if not ok then
        log("handler error:", tostring(err))
        if not pend.done then
          pend.keepalive = false
          respond(pend, 500, nil, tostring(err) .. "\n", "text/plain")
        end
      end
    end
  until not conn.again or conn.closed or guard >= 100000
  conn.in_process = false
end

---------------------------------------------------------------------------------------------
-- streaming responses
---------------------------------------------------------------------------------------------
-- /big: n bytes of 'x', one write in flight at a time (backpressure)
local function send_big(req, n, chunked)
  local conn = req.conn
  local headers = { { "Content-Type", "text/plain" } }
  if chunked then headers[#headers + 1] = { "Transfer-Encoding", "chunked" }
  else headers[#headers + 1] = { "Content-Length", tostring(n) } end
  local left = n
  local function more()
    if req.done or conn.closed then return end
    if left <= 0 then
      if chunked then write(conn, "0\r\n\r\n") end
      finish(req)
      return
    end
    local k = math.min(left, BIG_CHUNK)
    left = left - k
    local data = k == BIG_CHUNK and XS or XS:sub(1, k)
    if chunked then data = { ("%x\r\n"):format(k), data, "\r\n" } end
    write(conn, data, more)
  end
  if req.method == "HEAD" then write(conn, head_string(req, 200, headers)); finish(req); return end
  write(conn, head_string(req, 200, headers), more)
end

local function send_endless(req)
  local conn = req.conn
  local size = math.max(1, math.min(num_field(req, "chunk", 16384) or 16384, BIG_CHUNK))
  local interval = num_field(req, "interval_ms", 0) or 0
  local data = { ("%x\r\n"):format(size), XS:sub(1, size), "\r\n" }
  local timer
  hold(req)
  req.on_close = function() close_handle(timer) end
  local function more()
    if req.done or conn.closed then return end
    if interval > 0 then
      timer = new_timer(interval, function()
        if not req.done then write(conn, data, more) end
      end)
    else
      write(conn, data, more)
    end
  end
  write(conn, head_string(req, 200, { { "Content-Type", "text/plain" },
    { "Transfer-Encoding", "chunked" } }), more)
end

local function send_drip(req)
  local conn = req.conn
  local n = math.max(0, math.floor(num_field(req, "bytes", 10) or 10))
  local interval = math.max(0, num_field(req, "interval_ms", 100) or 100)
  local timer
  hold(req)
  req.on_close = function() close_handle(timer) end
  write(conn, head_string(req, 200, { { "Content-Type", "text/plain" },
    { "Content-Length", tostring(n) } }))
  local sent = 0
  local function tick()
    if req.done or conn.closed then return end
    if sent >= n then finish(req); return end
    timer = new_timer(interval, function()
      if req.done or conn.closed then return end
      sent = sent + 1
      write(conn, "x")
      tick()
    end)
  end
  tick()
end

-- /stream/<fmt>: one message of format fmt
local STREAM_TYPES = {
  ndjson = "application/x-ndjson", ["json-seq"] = "application/json-seq",
  lines = "text/plain", sse = "text/event-stream",
}

local function stream_msg(fmt, i, size)
  local head = ('{"n":%d,"pad":"'):format(i)
  local json = head .. ("p"):rep(math.max(0, size - #head - 2)) .. '"}'
  if fmt == "json-seq" then return "\30" .. json .. "\n" end
  if fmt == "sse" then return ("id: %d\nevent: tick\ndata: %s\n\n"):format(i, json) end
  return json .. "\n"
end

-- write a chunked body piece by piece, one write in flight; next_piece() -> string or nil
-- (the end: finish, or hold when keep_open); interval ms between pieces
local function send_pieces(req, headers, next_piece, interval, keep_open)
  local conn = req.conn
  local timer
  hold(req)
  req.on_close = function() close_handle(timer) end
  local function more()
    if req.done or conn.closed then return end
    local piece = next_piece()
    if not piece then
      if not keep_open then
        write(conn, "0\r\n\r\n")
        finish(req)
      end
      return
    end
    local function go() if not req.done then write(conn, { ("%x\r\n"):format(#piece), piece, "\r\n" }, more) end end
    if interval > 0 then timer = new_timer(interval, go) else go() end
  end
  headers[#headers + 1] = { "Transfer-Encoding", "chunked" }
  headers[#headers + 1] = { "Cache-Control", "no-cache" }
  write(conn, head_string(req, 200, headers), more)
end

local function send_stream(req, fmt)
  local n = num_field(req, "n", 10)
  local size = num_field(req, "size", 32)
  local chunk = num_field(req, "chunk", 0)
  local interval = num_field(req, "interval_ms", 0)
  local first = 1
  if not (n and size and chunk and interval) then
    return respond(req, 400, nil, "bad n/size/chunk/interval_ms\n", "text/plain")
  end
  if chunk <= 0 then chunk = BIG_CHUNK end
  if fmt == "sse" and tonumber(req.headers["last-event-id"] or "") then
    first = tonumber(req.headers["last-event-id"]) + 1
  end
  local pending, i = {}, math.floor(first)
  if req.args.bom == "1" then pending[1] = "\239\187\191" end
  if fmt == "sse" and req.args.retry then pending[#pending + 1] = "retry: " .. req.args.retry .. "\n\n" end
  local buf = table.concat(pending)
  local function next_piece()
    while #buf < chunk and i <= n do
      local parts, k = { buf }, #buf
      while k < chunk and i <= n do
        local m = stream_msg(fmt, i, size)
        parts[#parts + 1] = m
        k = k + #m
        i = i + 1
      end
      buf = table.concat(parts)
    end
    if buf == "" then return nil end
    local piece = buf:sub(1, chunk)
    buf = buf:sub(chunk + 1)
    return piece
  end
  send_pieces(req, { { "Content-Type", STREAM_TYPES[fmt] } }, next_piece, interval,
    req.args["end"] == "0")
end

---------------------------------------------------------------------------------------------
-- channels
---------------------------------------------------------------------------------------------
local function channel(name)
  local ch = channels[name]
  if not ch then
    ch = { msgs = {}, last = 0, waiters = {} }
    channels[name] = ch
  end
  return ch
end

-- a waiter: { req=, ready=function(ch) -> bool, answer=function(ch), timeout=function(), timer= }
local function park(req, ch, w, ms)
  hold(req)
  ch.waiters[w] = true
  local function unpark()
    ch.waiters[w] = nil
    close_handle(w.timer)
  end
  w.unpark = unpark
  req.on_close = unpark
  if ms then
    w.timer = new_timer(ms, function()
      if req.done then return end
      unpark()
      w.timeout()
    end)
  end
end

local function wake(ch)
  local ready = {}
  for w in pairs(ch.waiters) do
    if w.ready(ch) then ready[#ready + 1] = w end
  end
  for _, w in ipairs(ready) do
    w.unpark()
    if not w.req.done then w.answer(ch) end
  end
end

local function msgs_after(ch, since, limit)
  local out = {}
  local first = math.max(1, math.floor(since) + 1)
  for id = first, ch.last do
    if limit and #out >= limit then break end
    out[#out + 1] = id
  end
  return out
end

local function poll_body(ch, ids)
  local items = {}
  for i, id in ipairs(ids) do
    items[i] = cjson.encode({ id = tostring(id), data = ch.msgs[id] })
  end
  return json_array(items)
end

-- /sse/<ch>: the channel's messages after Last-Event-ID, as SSE, as they are published
local function do_sse(req, name)
  local ch = channel(name)
  local conn = req.conn
  local last = math.floor(tonumber(req.headers["last-event-id"] or "") or 0)
  local close_after = num_field(req, "close_after", nil)
  local sent = 0
  local function chunk(s) return { ("%x\r\n"):format(#s), s, "\r\n" } end
  local function flush()
    if req.done or conn.closed then return end
    while last < ch.last do
      last = last + 1
      write(conn, chunk(("id: %d\ndata: %s\n\n"):format(last, ch.msgs[last])))
      sent = sent + 1
      if close_after and sent >= close_after then
        write(conn, "0\r\n\r\n")
        return finish(req)
      end
    end
    park(req, ch, { req = req, ready = function(c) return c.last > last end, answer = flush }, nil)
  end
  local head = head_string(req, 200, { { "Content-Type", "text/event-stream" },
    { "Transfer-Encoding", "chunked" }, { "Cache-Control", "no-cache" } })
  write(conn, head)
  if req.args.retry then write(conn, chunk("retry: " .. req.args.retry .. "\n\n")) end
  flush()
end

local function do_publish(req, name)
  local ch = channel(name)
  local body = req.body or ""
  local list
  if body:match("^%s*%[") then
    local t = cjson_safe.decode(body)
    if type(t) == "table" then
      list = t
      for i = 1, #t do if type(t[i]) ~= "string" then list = nil; break end end
      if list and next(t) ~= nil and #t == 0 then list = nil end
    end
  end
  list = list or { body }
  for _, data in ipairs(list) do
    ch.last = ch.last + 1
    ch.msgs[ch.last] = data
  end
  respond_json(req, 200, { id = tostring(ch.last) })
  wake(ch)
end

local function do_poll(req, name)
  local ch = channel(name)
  local since = num_field(req, "since", 0)
  local tmo = num_field(req, "timeout_ms", 30000)
  local limit = num_field(req, "limit", nil)
  local empty = num_field(req, "empty", nil)
  if not since or not tmo or (field(req, "limit") and not limit) or (field(req, "empty") and not empty) then
    return respond_json(req, 400, { error = "bad since/timeout_ms/limit/empty" })
  end
  if limit then limit = math.max(0, math.floor(limit)) end
  local function answer(c)
    respond(req, 200, nil, poll_body(c, msgs_after(c, since, limit)), "application/json")
  end
  if ch.last > since then return answer(ch) end
  park(req, ch, {
    req = req,
    ready = function(c) return c.last > since end,
    answer = answer,
    timeout = function()
      if empty then respond(req, math.floor(empty), nil, "")
      else respond(req, 200, nil, "[]", "application/json") end
    end,
  }, tmo)
end

local function do_tg(req, name)
  local ch = channel(name)
  local offset = num_field(req, "offset", 0)
  local tmo = num_field(req, "timeout", 0)
  local limit = num_field(req, "limit", 100)
  if not offset or not tmo or not limit then
    return respond_json(req, 400, { ok = false, description = "bad offset/timeout/limit" })
  end
  limit = math.max(1, math.min(100, math.floor(limit)))
  local since = math.max(0, math.floor(offset) - 1)
  local function answer(c)
    local items = {}
    for i, id in ipairs(msgs_after(c, since, limit)) do
      items[i] = ('{"update_id":%d,"message":{"text":%s}}'):format(id, cjson.encode(c.msgs[id]))
    end
    respond(req, 200, nil, '{"ok":true,"result":' .. json_array(items) .. "}", "application/json")
  end
  if ch.last > since or tmo <= 0 then return answer(ch) end
  park(req, ch, {
    req = req,
    ready = function(c) return c.last > since end,
    answer = answer,
    timeout = function() answer(ch) end,
  }, tmo * 1000)
end

local function parse_wait(s)
  if s == nil or s == "" then return 300000 end
  local n, unit = tostring(s):match("^(%d+%.?%d*)(%a*)$")
  n = tonumber(n)
  if not n then return nil end
  local mult = ({ [""] = 1000, s = 1000, ms = 1, m = 60000, h = 3600000 })[unit]
  if not mult then return nil end
  return math.min(n * mult, 600000)
end

local function do_kv(req, name)
  local ch = channel(name)
  local index = req.args.index
  local wait = parse_wait(req.args.wait)
  if (index and not tonumber(index)) or not wait then
    return respond(req, 400, nil, "bad index or wait\n", "text/plain")
  end
  index = tonumber(index)
  -- an index the store has not reached (the "1" of an empty channel, or one from before a
  -- /_reset) means "anything newer than what exists now", like Consul's index reset rule
  local since = index and math.min(math.floor(index), ch.last) or 0
  local function answer(c)
    local hdr = { { "X-Consul-Index", tostring(c.last > 0 and c.last or 1) } }
    respond(req, 200, hdr, poll_body(c, msgs_after(c, since, nil)), "application/json")
  end
  if index == nil or ch.last > since then return answer(ch) end
  park(req, ch, {
    req = req,
    ready = function(c) return c.last > since end,
    answer = answer,
    timeout = function() answer(ch) end,
  }, wait)
end

-- etcd v2: the store lives in a channel (so /_reset clears it): ch.etcd = { index =,
-- nodes = { key -> node }, events = { oldest first } }
local ETCD_HISTORY = 20

local function etcd_respond(req, status, index, value)
  respond_json(req, status, value, { { "X-Etcd-Index", tostring(index) } })
end

local function do_etcd(req, key)
  local ch = channel("\0etcd")
  ch.etcd = ch.etcd or { index = 0, nodes = {}, events = {} }
  local e = ch.etcd
  key = "/" .. key
  if req.method == "PUT" then
    local value = req.args.value or parse_query(req.body or "").value
    if value == nil then
      return etcd_respond(req, 400, e.index, { errorCode = 210, message = "Value is Required" })
    end
    e.index = e.index + 1
    local prev = e.nodes[key]
    local node = { key = key, value = value, modifiedIndex = e.index,
      createdIndex = prev and prev.createdIndex or e.index }
    e.nodes[key] = node
    local event = { action = "set", node = node, prevNode = prev }
    e.events[#e.events + 1] = event
    if #e.events > ETCD_HISTORY then table.remove(e.events, 1) end
    etcd_respond(req, prev and 200 or 201, e.index, event)
    ch.last = e.index   -- wake() asks the waiters, which look at the events
    return wake(ch)
  end
  if req.args.wait ~= "true" then
    local node = e.nodes[key]
    if not node then
      return etcd_respond(req, 404, e.index,
        { errorCode = 100, message = "Key not found", cause = key, index = e.index })
    end
    return etcd_respond(req, 200, e.index, { action = "get", node = node })
  end
  local from = tonumber(req.args.waitIndex or "")
  if req.args.waitIndex and not from then
    return etcd_respond(req, 400, e.index, { errorCode = 203, message = "The given index is not a number" })
  end
  from = from or e.index + 1
  local start = e.events[1] and e.events[1].node.modifiedIndex or e.index + 1
  if from < start then
    return etcd_respond(req, 400, e.index, { errorCode = 401,
      message = "The event in requested index is outdated and cleared",
      cause = ("the requested history has been cleared [%d/%d]"):format(start, from),
      index = e.index })
  end
  local function first_event()
    for _, ev in ipairs(e.events) do
      if ev.node.key == key and ev.node.modifiedIndex >= from then return ev end
    end
  end
  if first_event() then return etcd_respond(req, 200, e.index, first_event()) end
  park(req, ch, {
    req = req,
    ready = function() return first_event() ~= nil end,
    answer = function() etcd_respond(req, 200, e.index, first_event()) end,
    timeout = function() close_conn(req.conn, "fin") end,   -- /_reset only: etcd never times out
  })
end

-- failure injection for /poll, /tg, /kv, /v2/keys; returns true when the request was consumed
local function inject(req)
  local f = failures[1]
  if not f then return false end
  f.count = f.count - 1
  if f.count <= 0 then table.remove(failures, 1) end
  local mode = f.mode
  if mode == "reset" then
    close_conn(req.conn, "reset")
  elseif mode == "close" then
    close_conn(req.conn, "fin")
  else
    local status = tonumber(mode)
    local hdr = {}
    if f.retry_after then hdr[1] = { "Retry-After", tostring(f.retry_after) } end
    respond_json(req, status, { error = "injected " .. mode }, hdr)
  end
  return true
end

local function do_fail(req)
  local t = cjson_safe.decode(req.body or "")
  if type(t) ~= "table" then return respond_json(req, 400, { error = "body must be a JSON object" }) end
  local mode = t.mode ~= nil and tostring(t.mode) or ""
  local count = tonumber(t.count or 1)
  if not count then return respond_json(req, 400, { error = "bad count" }) end
  if mode == "refuse" then
    local ms = tonumber(t.ms or 1000)
    if not ms then return respond_json(req, 400, { error = "bad ms" }) end
    refuse(ms) -- before answering: once the client has the answer, connects are refused
    respond_json(req, 200, { ok = true })
    return
  end
  if not (mode == "reset" or mode == "close" or mode:match("^[1-5]%d%d$")) then
    return respond_json(req, 400, { error = "unknown mode " .. mode })
  end
  local ra = t.retry_after
  if ra == cjson.null then ra = nil end
  if type(ra) == "number" then ra = math.tointeger(ra) or ra end -- cjson gives floats
  if count >= 1 then
    failures[#failures + 1] = { mode = mode, count = math.floor(count), retry_after = ra }
  end
  respond_json(req, 200, { ok = true, pending = #failures })
end

local function do_reset(req)
  local old = channels
  channels, failures, stats.hits = {}, {}, {}
  -- answer polls parked on the cleared channels as if their wait elapsed
  for _, ch in pairs(old) do
    local ws = {}
    for w in pairs(ch.waiters) do ws[#ws + 1] = w end
    ch.msgs, ch.last = {}, 0
    for _, w in ipairs(ws) do
      w.unpark()
      if not w.req.done then w.timeout() end
    end
  end
  respond_json(req, 200, { ok = true })
end

---------------------------------------------------------------------------------------------
-- routes
---------------------------------------------------------------------------------------------
local JSON_BODY = '{"ok":true,"items":[1,2,3],"nothing":null,"name":"longpoll"}'

local function status_arg(req, default)
  local s = req.args.status
  if s == nil or s == "" then return default end
  s = tonumber(s)
  if not s or s < 100 or s > 999 then return nil end
  return math.floor(s)
end

local function do_hold(req)
  local ms = req.args.ms
  local body = req.args.body
  local status = status_arg(req, body and body ~= "" and 200 or 204)
  if not status or (ms and not tonumber(ms)) then
    return respond(req, 400, nil, "bad ms or status\n", "text/plain")
  end
  hold(req)
  if ms then
    local hdr = req.args.etag and { { "ETag", req.args.etag } } or nil
    local t = new_timer(tonumber(ms), function()
      respond(req, status, hdr, body or "", req.args.type or "text/plain")
    end)
    req.on_close = function() close_handle(t) end
  end
end

function on_request(req)
  local path = req.path
  req.args = parse_query(req.query)
  local control = path:sub(1, 2) == "/_"
  if not control then
    stats.total = stats.total + 1
    stats.hits[path] = (stats.hits[path] or 0) + 1
  end
  local m = req.method

  if path == "/echo" then
    return respond_json(req, 200, {
      method = m, path = path, query = req.query, args = req.args,
      headers = req.headers, body = req.body, version = req.version,
    })
  elseif path == "/json" then
    return respond(req, 200, nil, JSON_BODY, "application/json")
  elseif path == "/text" then
    return respond(req, 200, nil, "hello", "text/plain")
  elseif path == "/jsonish" then
    return respond(req, 200, nil, " [1,2,3]", "text/plain")
  elseif path == "/garbage" then
    return respond(req, 200, nil, '{"a": [1, 2,', "application/json")
  elseif path == "/headers" then
    return respond(req, 200, { { "X-Repeat", "a" }, { "X-Repeat", "b" }, { "X-MiXeD", "MixedCase" } },
      "headers", "text/plain")
  elseif path == "/hold" then
    return do_hold(req)
  elseif path:match("^/status/%d+$") then
    local s = tonumber(path:match("%d+$"))
    if s < 200 or s > 999 then return respond(req, 400, nil, "bad status\n", "text/plain") end
    return respond_json(req, s, '{"status":' .. s .. "}")
  elseif path == "/empty" then
    local s = status_arg(req, 200)
    if not s then return respond(req, 400, nil, "bad status\n", "text/plain") end
    write(req.conn, head_string(req, s, { { "Content-Length", "0" } }))
    return finish(req)
  elseif path == "/big" then
    local n = tonumber(req.args.bytes or "1048576")
    if not n or n < 0 then return respond(req, 400, nil, "bad bytes\n", "text/plain") end
    return send_big(req, math.floor(n), req.args.chunked == "1" or req.args.chunked == "true")
  elseif path == "/reset" or path == "/truncated" then
    req.keepalive = false
    local data = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n"
      .. XS:sub(1, 1000)
    local conn = req.conn
    write(conn, data, function()
      if path == "/truncated" then return close_conn(conn, "fin") end
      -- let the client read the bytes first: an RST that finds unread data in the client's
      -- receive queue may surface there as a plain EOF instead of ECONNRESET
      local t = new_timer(50, function() close_conn(conn, "reset") end)
      req.on_close = function() close_handle(t) end
    end)
    return
  elseif path == "/endless" then
    return send_endless(req)
  elseif path == "/drip" then
    return send_drip(req)
  elseif path:match("^/stream/") then
    local fmt = path:match("^/stream/(.+)$")
    if not STREAM_TYPES[fmt] then return respond(req, 404, nil, "no such format\n", "text/plain") end
    return send_stream(req, fmt)
  elseif path == "/silence" then
    hold(req)
    return
  elseif path == "/close" then
    return close_conn(req.conn, "fin")
  elseif path == "/redirect" then
    local s = status_arg(req, 302)
    if not s then return respond(req, 400, nil, "bad status\n", "text/plain") end
    return respond(req, s, { { "Location", req.args.to or "/json" } }, "")
  elseif path == "/auth" then
    local got = req.headers.authorization
    if not got then
      local challenge = req.args.type == "digest"
        and 'Digest realm="lp", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", qop="auth"'
        or 'Basic realm="lp"'
      return respond(req, 401, { { "WWW-Authenticate", challenge } }, "", "text/plain")
    end
    return respond_json(req, 200, { authorization = got })
  elseif path == "/redirect-loop" then
    local n = math.floor(tonumber(req.args.n or "0") or 0)
    return respond(req, 302, { { "Location", "/redirect-loop?n=" .. (n + 1) } }, "")
  elseif path == "/redirect-file" then
    return respond(req, 302, { { "Location", "file:///etc/passwd" } }, "")
  end

  local ch = path:match("^/publish/(.+)$")
  if ch then
    if m ~= "POST" and m ~= "PUT" then return respond(req, 405, { { "Allow", "POST" } }, "") end
    return do_publish(req, ch)
  end
  ch = path:match("^/sse/(.+)$")
  if ch then
    if inject(req) then return end
    return do_sse(req, ch)
  end
  ch = path:match("^/poll/(.+)$")
  if ch then
    if inject(req) then return end
    return do_poll(req, ch)
  end
  ch = path:match("^/tg/([^/]+)/getUpdates$")
  if ch then
    if inject(req) then return end
    return do_tg(req, ch)
  end
  ch = path:match("^/kv/(.+)$")
  if ch then
    if inject(req) then return end
    return do_kv(req, ch)
  end
  ch = path:match("^/v2/keys/(.+)$")
  if ch then
    if inject(req) then return end
    return do_etcd(req, ch)
  end

  if path == "/_stats" then
    local hits = stats.hits
    return respond_json(req, 200, {
      held = stats.held, open = stats.open, total = stats.total,
      connections = stats.connections, -- accepted since start, /_* included
      hits = hits, -- cjson encodes an empty table as {}
      listening = listening, pending_failures = #failures,
    })
  elseif path == "/_fail" then
    if m ~= "POST" then return respond(req, 405, { { "Allow", "POST" } }, "") end
    return do_fail(req)
  elseif path == "/_reset" then
    if m ~= "POST" then return respond(req, 405, { { "Allow", "POST" } }, "") end
    return do_reset(req)
  end
  return respond_json(req, 404, { error = "not found", path = path })
end

---------------------------------------------------------------------------------------------
-- main
---------------------------------------------------------------------------------------------
-- writes to a vanished client must not kill us
local sigpipe = uv.new_signal()
sigpipe:start("sigpipe", function() end)

local ok, err = listen()
if not ok then
  log("cannot listen on", HOST, tostring(opt_port), tostring(err))
  os.exit(1)
end

local function shutdown()
  if refuse_timer then close_handle(refuse_timer) end
  if listener then close_handle(listener) end
  for conn in pairs(conns) do close_conn(conn, "now") end
  uv.stop()
end

for _, name in ipairs({ "sigterm", "sigint" }) do
  local s = uv.new_signal()
  s:start(name, safe(shutdown))
end

if opt_parent then
  local t = uv.new_timer()
  t:start(500, 500, safe(function()
    if not uv.kill(opt_parent, 0) then
      log("parent", opt_parent, "gone, exiting")
      shutdown()
    end
  end))
  t:unref()
end

io.stdout:write("PORT ", tostring(port), "\n")
io.stdout:flush()

uv.run("default")
io.stdout:flush()
os.exit(0)
