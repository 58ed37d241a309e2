-- Starts and drives spec/support/server.lua from specs and benchmarks.
--
--   local testserver = require "support.testserver"   -- busted --lpath='spec/?.lua'
--   local srv = testserver.start()                     -- or start{port = N}
--   srv:url("/poll/a?since=0")  --> "http://127.0.0.1:<port>/poll/a?since=0"
--   srv:publish("a", "hello")   srv:publish("a", {"m1", "m2"})   --> last id (string)
--   srv:wait_held(1, 5)         --> true, 1
--   srv:stop()
--
-- Control requests use LuaSocket on fresh connections, so they do not work while a
-- {mode = "refuse"} failure keeps the listening socket closed (see wait_listening).

local socket = require "socket"
local http = require "socket.http"
local ltn12 = require "ltn12"
local cjson = require "cjson"
local compat = require "longpoll.compat"
local tointeger = compat.tointeger

local M = {}

local LUA = "lua5.4"
local CONTROL_TIMEOUT = 5 -- seconds, for each control request

local function script_dir()
  local src = debug.getinfo(1, "S").source
  local dir = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/[^/]*$") or "."
  if dir:sub(1, 1) ~= "/" then
    local pwd = os.getenv("PWD")
    if pwd and pwd ~= "" then dir = pwd .. "/" .. dir end
  end
  return dir
end

M.server_path = script_dir() .. "/server.lua"

local proc = require "support.proc"
local shell_quote, read_file, self_pid, alive = proc.shell_quote, proc.read_file, proc.self_pid, proc.alive
M.alive = alive

--- A loopback port with nothing listening on it (bound to port 0, then closed).
function M.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

local Server = {}
Server.__index = Server

--- Starts the server as a child process; waits (up to opts.timeout, default 5 s) for it to
--- listen. opts: port (default 0 = ephemeral).
function M.start(opts)
  opts = opts or {}
  local out = os.tmpname()
  local err = out .. ".err"
  local parent = self_pid()
  local cmd = ("%s %s --port %d%s </dev/null >%s 2>%s & echo $!"):format(
    LUA, shell_quote(M.server_path), tonumber(opts.port or 0),
    parent and (" --parent " .. parent) or "",
    shell_quote(out), shell_quote(err))
  local p = assert(io.popen(cmd, "r"))
  local pid = tonumber(p:read("*a"):match("%d+"))
  p:close()
  assert(pid, "testserver: could not start " .. M.server_path)

  local self = setmetatable({ pid = pid, outfile = out, errfile = err }, Server)
  local deadline = socket.gettime() + (opts.timeout or 5)
  while true do
    local text = read_file(out) or ""
    local port = text:match("PORT (%d+)\n")
    if port then self.port = tonumber(port); break end
    if not alive(pid) or socket.gettime() > deadline then
      local msg = read_file(err) or ""
      self:stop()
      error(("testserver: server did not start (pid %d): %s"):format(pid, msg), 2)
    end
    socket.sleep(0.01)
  end
  -- stop the server when the object is collected or the Lua state closes
  compat.finalizer(self, Server.stop)
  return self
end

function Server:url(path)
  return ("http://127.0.0.1:%d%s"):format(self.port, path or "/")
end

--- One control request on a fresh connection. Returns status, body, headers.
function Server:request(method, path, body, headers)
  local chunks = {}
  local hdrs = { ["content-length"] = body and tostring(#body) or nil }
  for k, v in pairs(headers or {}) do hdrs[k:lower()] = v end
  local saved = http.TIMEOUT
  http.TIMEOUT = CONTROL_TIMEOUT -- socket.http applies it to its socket; restore right after
  local pok, ok, status, rh = pcall(http.request, {
    url = self:url(path),
    method = method,
    headers = hdrs,
    source = body and ltn12.source.string(body) or nil,
    sink = ltn12.sink.table(chunks),
  })
  http.TIMEOUT = saved
  if not pok then error("testserver: " .. method .. " " .. path .. ": " .. tostring(ok), 2) end
  if not ok then error("testserver: " .. method .. " " .. path .. ": " .. tostring(status), 2) end
  return status, table.concat(chunks), rh
end

local function control(self, method, path, body)
  local status, data = self:request(method, path, body,
    body and { ["content-type"] = "application/json" } or nil)
  if status ~= 200 then
    error(("testserver: %s %s -> %s %s"):format(method, path, tostring(status), data), 3)
  end
  return cjson.decode(data)
end

--- GET /_stats: { held =, open =, total =, hits = { [path] = n }, listening = }
function Server:stats()
  local st = control(self, "GET", "/_stats")
  -- cjson decodes every number as a float; counts read better as integers
  for _, k in ipairs({ "held", "open", "total", "connections" }) do st[k] = tointeger(st[k]) or st[k] end
  for k, v in pairs(st.hits or {}) do st.hits[k] = tointeger(v) or v end
  return st
end

--- Publishes one message (string) or a burst (list of strings); returns the last id (string).
function Server:publish(ch, data)
  local list = type(data) == "table" and data or { tostring(data) }
  local body = #list == 0 and "[]" or cjson.encode(list) -- always a JSON array: unambiguous
  return control(self, "POST", "/publish/" .. ch, body).id
end

--- Queues a failure for the next requests to /poll, /tg, /kv:
--- { mode = "503"|"429"|"reset"|"close"|"refuse", count =, retry_after =, ms = }
function Server:fail(t)
  local copy = {}
  for k, v in pairs(t) do copy[k] = v end
  if copy.mode ~= nil then copy.mode = tostring(copy.mode) end
  return control(self, "POST", "/_fail", cjson.encode(copy))
end

--- Clears channels, hits and pending failures.
function Server:reset()
  return control(self, "POST", "/_reset", "{}")
end

--- Polls /_stats until held == n (default 5 s). Returns true|false, last held count.
function Server:wait_held(n, seconds)
  local deadline = socket.gettime() + (seconds or 5)
  local held
  for _ = 1, 100000 do
    local ok, st = pcall(self.stats, self)
    if ok then
      held = st.held
      if held == n then return true, held end
    end
    if socket.gettime() > deadline then break end
    socket.sleep(0.01)
  end
  return false, held
end

--- Waits until a new connection is accepted again (after a "refuse" failure).
function Server:wait_listening(seconds)
  local deadline = socket.gettime() + (seconds or 5)
  for _ = 1, 100000 do
    local c = socket.tcp()
    c:settimeout(1)
    local ok = c:connect("127.0.0.1", self.port)
    c:close()
    if ok then return true end
    if socket.gettime() > deadline then break end
    socket.sleep(0.01)
  end
  return false
end

--- The server's stderr so far (for diagnostics).
function Server:log()
  return read_file(self.errfile) or ""
end

--- SIGTERM, wait up to `seconds` (default 3) for exit, then SIGKILL. Idempotent.
--- Returns true when the process is gone.
function Server:stop(seconds)
  if self.stopped then return true end
  local pid = self.pid
  if pid and alive(pid) then
    os.execute("kill -TERM " .. pid .. " 2>/dev/null")
    local deadline = socket.gettime() + (seconds or 3)
    while alive(pid) and socket.gettime() < deadline do socket.sleep(0.01) end
    if alive(pid) then
      os.execute("kill -KILL " .. pid .. " 2>/dev/null")
      local hard = socket.gettime() + 2
      while alive(pid) and socket.gettime() < hard do socket.sleep(0.01) end
    end
  end
  self.stopped = true
  os.remove(self.outfile)
  os.remove(self.errfile)
  return not alive(pid)
end

return M
