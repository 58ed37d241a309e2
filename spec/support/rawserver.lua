-- A raw scripted HTTP server for hostile-server specs: each accepted
-- connection plays a script of steps with exact bytes and timing.
--
--   local rawserver = require "support.rawserver"
--   local srv = rawserver.start{ conns = { steps1, steps2 } }   -- the n-th connection plays
--                                                              -- conns[n] (the last repeats)
--   local srv = rawserver.start{ steps = steps }               -- every connection plays steps
--   local srv = rawserver.start{ script = "path.lua", args = {...} }
--       -- path.lua returns function(conn_no, args) -> steps (run in the server process),
--       -- or { respond = function(request_line, conn_no, args) -> steps }: each
--       -- connection then reads a request, plays respond's steps, and reads the next
--   srv:url("/x")                 --> "http://127.0.0.1:<port>/x"
--   srv:stats()                   --> { accepted, requests, open, held, peer_closed,
--                                       notes = { [name] = n } }
--   srv:wait(function(st) return st.held == 1 end, 5)   --> true|false, stats
--   srv:requests()                --> { {conn =, line = "GET /x HTTP/1.1"}, ... } in order
--   srv:stop()                    -- by PID; idempotent; also when collected
--
-- Steps, played in order on each connection:
--   "request"        wait for one whole request (head, then a Content-Length body)
--   {send = bytes}   write the bytes as one write; with note = "name", once they are
--                    written (srv:stats().notes.name counts them)
--   {sleep = ms}     pause
--   "hold"           keep the connection open until the client closes it
--   "close"          close it (FIN)          "reset"   close it with RST
--   "again"          play the steps again from the first
--   function         (script mode only) called with the last request line; the
--                    step it returns is played in its place
-- After the last step the connection stays open, its input read and dropped,
-- until the client closes it. A client that closes early ends the script.
--
-- The server is this file run as a child (`lua5.4 rawserver.lua --serve <file>`):
-- luv, loopback, one line "PORT n" on stdout, then one line per event (ACCEPT c,
-- REQUEST c <request line>, NOTE c <name>, HOLD c, PEER_CLOSED c, CLOSED c), read by
-- the driver.

local MODE = ...

if MODE ~= "--serve" then
  -------------------------------------------------------------------------------
  -- the driver, in the spec process
  -------------------------------------------------------------------------------
  local socket = require "socket"
  local proc = require "support.proc"
  local LUA = "lua5.4"
  local HERE = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
  if HERE:sub(1, 1) ~= "/" then HERE = (os.getenv("PWD") or ".") .. "/" .. HERE end

  -- a value as a Lua expression that loads back exactly (bytes included)
  local function serialize(v, out)
    local t = type(v)
    if t == "string" then out[#out + 1] = ("%q"):format(v)
    elseif t == "number" or t == "boolean" then out[#out + 1] = tostring(v)
    elseif t == "table" then
      out[#out + 1] = "{"
      for k, x in pairs(v) do
        out[#out + 1] = "["
        serialize(k, out)
        out[#out + 1] = "]="
        serialize(x, out)
        out[#out + 1] = ","
      end
      out[#out + 1] = "}"
    else error("rawserver: cannot pass a " .. t) end
    return out
  end

  local M = {}
  local Server = {}
  Server.__index = Server

  function M.start(opts)
    local spec = { conns = opts.conns, steps = opts.steps, script = opts.script, args = opts.args }
    assert(spec.conns or spec.steps or spec.script, "rawserver.start: conns, steps or script")
    local base = os.tmpname()
    local f = assert(io.open(base, "wb"))
    f:write("return ", table.concat(serialize(spec, {})))
    f:close()
    local out, err = base .. ".out", base .. ".err"
    local cmd = ("%s %s --serve %s %d </dev/null >%s 2>%s & echo $!"):format(LUA,
      proc.shell_quote(HERE .. "/rawserver.lua"), proc.shell_quote(base),
      proc.self_pid() or 0, proc.shell_quote(out), proc.shell_quote(err))
    local p = assert(io.popen(cmd, "r"))
    local pid = tonumber(p:read("*a"):match("%d+"))
    p:close()
    local self = setmetatable({ pid = pid, files = { base, out, err }, outfile = out, errfile = err }, Server)
    local deadline = socket.gettime() + (opts.timeout or 5)
    for _ = 1, 10000 do
      local port = (proc.read_file(out) or ""):match("^PORT (%d+)\n")
      if port then self.port = tonumber(port) break end
      if not proc.alive(pid) or socket.gettime() > deadline then
        local msg = proc.read_file(err) or ""
        self:stop()
        error("rawserver: did not start: " .. msg, 2)
      end
      socket.sleep(0.01)
    end
    self.gc_guard = setmetatable({}, { __gc = function() pcall(Server.stop, self) end })
    return self
  end

  function Server:url(path)
    return ("http://127.0.0.1:%d%s"):format(self.port, path or "/")
  end

  local function events(self)
    local list = {}
    for line in (proc.read_file(self.outfile) or ""):gmatch("[^\n]+") do
      local what, conn, rest = line:match("^(%u[%u_]*) (%d+) ?(.*)$")
      if what then list[#list + 1] = { what = what, conn = tonumber(conn), rest = rest } end
    end
    return list
  end

  function Server:stats()
    local st = { accepted = 0, requests = 0, open = 0, held = 0, peer_closed = 0, notes = {} }
    local holding = {}
    for _, ev in ipairs(events(self)) do
      if ev.what == "ACCEPT" then st.accepted = st.accepted + 1; st.open = st.open + 1
      elseif ev.what == "REQUEST" then st.requests = st.requests + 1
      elseif ev.what == "HOLD" then holding[ev.conn] = true; st.held = st.held + 1
      elseif ev.what == "NOTE" then st.notes[ev.rest] = (st.notes[ev.rest] or 0) + 1
      elseif ev.what == "PEER_CLOSED" then st.peer_closed = st.peer_closed + 1
      elseif ev.what == "CLOSED" then
        st.open = st.open - 1
        if holding[ev.conn] then holding[ev.conn] = nil; st.held = st.held - 1 end
      end
    end
    return st
  end

  function Server:requests()
    local list = {}
    for _, ev in ipairs(events(self)) do
      if ev.what == "REQUEST" then list[#list + 1] = { conn = ev.conn, line = ev.rest } end
    end
    return list
  end

  -- polls stats (10 ms steps, at most `seconds`, default 5) until pred(stats)
  function Server:wait(pred, seconds)
    local deadline = socket.gettime() + (seconds or 5)
    local st
    for _ = 1, 100000 do
      st = self:stats()
      if pred(st) then return true, st end
      if socket.gettime() > deadline then break end
      socket.sleep(0.01)
    end
    return false, st
  end

  function Server:log()
    return proc.read_file(self.errfile) or ""
  end

  function Server:stop()
    if self.stopped then return true end
    self.stopped = true
    local pid = self.pid
    if pid and proc.alive(pid) then
      os.execute("kill -TERM " .. pid .. " 2>/dev/null")
      local deadline = socket.gettime() + 3
      while proc.alive(pid) and socket.gettime() < deadline do socket.sleep(0.01) end
      if proc.alive(pid) then os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
    end
    for _, f in ipairs(self.files) do os.remove(f) end
    return true
  end

  return M
end

---------------------------------------------------------------------------------------------
-- the server, in its own process
---------------------------------------------------------------------------------------------
local uv = require "luv"
local _, spec_file, parent = ...
local spec = assert(loadfile(spec_file))()
local generate, respond
if spec.script then
  local make = assert(loadfile(spec.script))()
  if type(make) == "table" then
    respond = function(line, n) return make.respond(line, n, spec.args or {}) end
    generate = function() return { "request" } end
  else
    generate = function(n) return make(n, spec.args or {}) end
  end
elseif spec.conns then
  generate = function(n) return spec.conns[math.min(n, #spec.conns)] end
else
  generate = function() return spec.steps end
end
parent = tonumber(parent)

local function emit(...)
  io.stdout:write(table.concat({ ... }, " "), "\n")
  io.stdout:flush()
end

local function log(...)
  io.stderr:write("rawserver: ", table.concat({ ... }, " "), "\n")
end

local function safe(fn)
  return function(...)
    local ok, err = pcall(fn, ...)
    if not ok then log("callback error:", tostring(err)) end
  end
end

-- sockets inherited from the spec process would keep its connections alive
do
  local ok, entries = pcall(uv.fs_scandir, "/proc/self/fd")
  local fds = {}
  while ok and entries do
    local name = uv.fs_scandir_next(entries)
    if not name then break end
    fds[#fds + 1] = tonumber(name)
  end
  for _, fd in ipairs(fds) do
    local target = fd > 2 and uv.fs_readlink("/proc/self/fd/" .. fd)
    if target and target:match("^socket:") then uv.fs_close(fd) end
  end
end

local conns = {}
local nconn = 0

-- one connection playing its steps; `wake` resumes the step that waits
local function serve(tcp)
  nconn = nconn + 1
  local c = { no = nconn, tcp = tcp, inbuf = "", steps = generate(nconn) or {}, pc = 1 }
  conns[c] = true
  emit("ACCEPT", c.no)

  local function finish(how)
    if c.closed then return end
    c.closed = true
    if c.timer and not c.timer:is_closing() then c.timer:close() end
    if how == "reset" then tcp:close_reset() elseif not tcp:is_closing() then tcp:close() end
    conns[c] = nil
    emit("CLOSED", c.no)
  end
  c.finish = finish

  -- one whole request at the front of inbuf: consume it, return its first line
  local function take_request()
    local head_end = c.inbuf:find("\r\n\r\n", 1, true)
    if not head_end then return nil end
    local head = c.inbuf:sub(1, head_end + 3)
    local len = tonumber(head:lower():match("\ncontent%-length:%s*(%d+)")) or 0
    if #c.inbuf < head_end + 3 + len then return nil end
    c.inbuf = c.inbuf:sub(head_end + 4 + len)
    return head:match("^([^\r\n]*)")
  end

  local step
  local function advance()
    c.pc = c.pc + 1
    return step()
  end
  -- run steps until one has to wait
  step = function()
    if c.closed then return end
    local s = c.steps[c.pc]
    if type(s) == "function" then s = s(c.line) end
    if s == nil then c.waiting = nil return end -- idle: read and drop until the peer closes
    if s == "request" then
      local line = take_request()
      if not line then c.waiting = "request" return end
      c.waiting = nil
      c.line = line
      emit("REQUEST", c.no, line)
      if respond then           -- this request's steps, then the next request
        local ok, steps = pcall(respond, line, c.no)
        if not ok then log("respond:", tostring(steps)) steps = { "close" } end
        c.steps, c.pc = steps, 1
        steps[#steps + 1] = "request"
        return step()
      end
      return advance()
    elseif s == "hold" then
      c.waiting = "hold"
      emit("HOLD", c.no)
      return
    elseif s == "close" then return finish("close")
    elseif s == "reset" then return finish("reset")
    elseif s == "again" then c.pc = 1 return step()
    elseif type(s) == "table" and s.send then
      if s.note then
        tcp:write(s.send, function(err) if not err then emit("NOTE", c.no, s.note) end end)
      else
        tcp:write(s.send)
      end
      return advance()
    elseif type(s) == "table" and s.sleep then
      c.timer = uv.new_timer()
      c.timer:start(math.max(0, math.floor(s.sleep)), 0, safe(function()
        c.timer:close()
        c.timer = nil
        advance()
      end))
      return
    end
    log("unknown step", tostring(s))
    return finish("close")
  end

  tcp:read_start(safe(function(err, data)
    if c.closed then return end
    if err or not data then
      emit("PEER_CLOSED", c.no)
      return finish("close")
    end
    if c.steps[c.pc] == nil then return end  -- idle: drop
    c.inbuf = c.inbuf .. data
    if c.waiting == "request" then step() end
  end))
  step()
end

local sigpipe = uv.new_signal()
sigpipe:start("sigpipe", function() end)

local server = uv.new_tcp()
assert(server:bind("127.0.0.1", 0))
assert(server:listen(512, safe(function(err)
  if err then log("accept:", err) return end
  local tcp = uv.new_tcp()
  if server:accept(tcp) then serve(tcp) else tcp:close() end
end)))

local function shutdown()
  for c in pairs(conns) do c.finish("close") end
  if not server:is_closing() then server:close() end
  uv.stop()
end
for _, name in ipairs({ "sigterm", "sigint" }) do
  local s = uv.new_signal()
  s:start(name, safe(shutdown))
end
if parent and parent > 0 then
  local t = uv.new_timer()
  t:start(500, 500, safe(function()
    if not uv.kill(parent, 0) then shutdown() end
  end))
  t:unref()
end

emit("PORT", server:getsockname().port)
uv.run("default")
os.exit(0)
