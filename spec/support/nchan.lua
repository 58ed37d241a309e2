-- nginx + Nchan for specs: start it on a free loopback port in a temp prefix, publish to it,
-- restart it, stop it by PID.
--
--   local nchan = require "support.nchan"
--   local srv = nchan.start{ subscriber_timeout = "2s" }
--   srv:url("/sub/ch")               --> "http://127.0.0.1:<port>/sub/ch"
--   srv:publish("ch", "hello")       --> true, "<message id>" (or nil, err)
--   srv:info("ch")                   --> { messages = n, subscribers = n }
--   srv:wait_subscribers("ch", 1)    --> true once a poll waits on the channel (bounded)
--   srv:answered("ch", 408)          --> polls of /sub/ch answered 408 so far (access log)
--   srv:h2url("/sub/ch")             --> the same over HTTP/2 cleartext (prior knowledge)
--   srv:tlsurl("/sub/ch")            --> the same over HTTPS, HTTP/2 by ALPN; srv.cafile trusts it
--   srv:restart()                    -- stop, then start again on the same port (memory store lost)
--   srv:reload()                     -- nginx -s reload (HUP): new workers, the old ones gone
--   srv:stop()                       -- stops the master and its workers by PID
--
-- nchan.available() tells whether nginx and the Nchan module are installed (specs skip if not).

local socket = require "socket"
local http = require "socket.http"
local ltn12 = require "ltn12"

local M = {}

local NGINX = os.getenv("LONGPOLL_NGINX") or "/usr/sbin/nginx"
local MODULE = "/usr/lib/nginx/modules/ngx_nchan_module.so"
local HERE = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local proc = require "support.proc"
local slurp, sh_quote, alive = proc.read_file, proc.shell_quote, proc.alive

-- Direct children of a process, from /proc (nginx workers of a master).
local function children(pid)
  local s = slurp(("/proc/%d/task/%d/children"):format(pid, pid)) or ""
  local out = {}
  for c in s:gmatch("%d+") do out[#out + 1] = tonumber(c) end
  return out
end

local function kill(pid, sig)
  os.execute(("kill -%s %d 2>/dev/null"):format(sig, pid))
end

-- Wait (bounded: `seconds`, 10 ms steps) until `pred()` is true; returns its last value.
local function wait_until(seconds, pred)
  local deadline = socket.gettime() + seconds
  repeat
    local v = pred()
    if v then return v end
    socket.sleep(0.01)
  until socket.gettime() > deadline
  return pred()
end

-- n distinct free TCP ports on 127.0.0.1 (nginx cannot listen on port 0): all n are
-- bound at once, then closed, so no two are the same (one after another, bind(0) may
-- hand out a port it has just handed out, and nginx refuses a duplicate listen).
-- M.free_ports, so a spec can hand start() a port that is taken.
function M.free_ports(n)
  local socks, ports = {}, {}
  for i = 1, n do
    socks[i] = assert(socket.bind("127.0.0.1", 0))
    local _, port = socks[i]:getsockname()
    ports[i] = tonumber(port)
  end
  for i = 1, n do socks[i]:close() end
  return ports
end

local function can_connect(port)
  local c = socket.tcp()
  c:settimeout(0.2)
  local ok = c:connect("127.0.0.1", port)
  c:close()
  return ok ~= nil
end

function M.available()
  return exists(NGINX) and exists(MODULE)
end

local Server = {}
Server.__index = Server

function Server:url(path)
  return ("http://127.0.0.1:%d%s"):format(self.port, path or "/")
end

-- The same locations over HTTPS (self-signed: pass cainfo = srv.cafile), HTTP/2 by ALPN.
function Server:tlsurl(path)
  return ("https://127.0.0.1:%d%s"):format(self.tlsport, path or "/")
end

-- The same locations over HTTP/2 cleartext (prior knowledge only, nginx 1.22).
function Server:h2url(path)
  return ("http://127.0.0.1:%d%s"):format(self.h2port, path or "/")
end

-- POST one message to channel `ch`; returns true, message id ("<time>:<tag>") or nil, err.
function Server:publish(ch, data, content_type)
  local out = {}
  local _, code, headers = http.request{
    url = self:url("/pub/" .. ch),
    method = "POST",
    headers = {
      ["content-type"] = content_type or "text/plain",
      ["content-length"] = tostring(#data),
    },
    source = ltn12.source.string(data),
    sink = ltn12.sink.table(out),
  }
  local body = table.concat(out)
  if code ~= 201 and code ~= 202 then
    return nil, ("publish to %s: %s %s"):format(ch, tostring(code), body)
  end
  return true, body:match("last message id: (%S+)")
end

-- Channel info from the publisher location: { messages = n, subscribers = n } (zeros when
-- the channel does not exist).
function Server:info(ch)
  local out = {}
  local _, code = http.request{ url = self:url("/pub/" .. ch), sink = ltn12.sink.table(out) }
  local body = table.concat(out)
  if code ~= 200 then return { messages = 0, subscribers = 0, status = code } end
  return {
    messages = tonumber(body:match("queued messages: (%d+)")) or 0,
    subscribers = tonumber(body:match("active subscribers: (%d+)")) or 0,
    status = code,
  }
end

-- Wait (bounded, `seconds`, default 5) until `n` subscribers wait on channel `ch`.
function Server:wait_subscribers(ch, n, seconds)
  return wait_until(seconds or 5, function() return self:info(ch).subscribers == n end) or false
end

-- How many polls of /sub/<ch> nginx answered with `status` (from the access log).
function Server:answered(ch, status)
  local n = 0
  local pat = '"GET /sub/' .. ch .. ' HTTP/1.1" ' .. status .. ' '
  for line in (slurp(self.prefix .. "/access.log") or ""):gmatch("[^\n]+") do
    if line:find(pat, 1, true) then n = n + 1 end
  end
  return n
end

function Server:error_log()
  return slurp(self.prefix .. "/error.log") or ""
end

-- Start nginx with the config written for this server; raises when it does not come up.
function Server:_launch()
  local cmd = ("%s -p %s -c %s -e %s >%s 2>&1"):format(NGINX, sh_quote(self.prefix),
    sh_quote(self.prefix .. "/nginx.conf"), sh_quote(self.prefix .. "/error.log"),
    sh_quote(self.prefix .. "/start.log"))
  if not proc.ok(cmd) then
    error("nginx did not start: " .. (slurp(self.prefix .. "/start.log") or "") .. self:error_log())
  end
  -- nginx binds before it daemonizes; the daemon writes the pid file a moment later
  local pid = wait_until(5, function()
    local n = tonumber(slurp(self.prefix .. "/nginx.pid") or "")
    return n and alive(n) and n
  end)
  if not pid then error("nginx wrote no pid file: " .. self:error_log()) end
  self.pid = pid
  if not wait_until(5, function() return can_connect(self.port) end) then
    self:stop()
    error("nginx is not listening on port " .. self.port .. ": " .. self:error_log())
  end
end

-- Stop nginx by PID: TERM (fast shutdown, held polls are cut), KILL after 5 s; then its workers.
function Server:stop()
  local pid = self.pid
  if not pid then return end
  self.pid = nil
  local workers = children(pid)
  kill(pid, "TERM")
  if not wait_until(5, function() return not alive(pid) end) then kill(pid, "KILL") end
  for _, w in ipairs(workers) do
    if not wait_until(2, function() return not alive(w) end) then kill(w, "KILL") end
  end
  os.remove(self.prefix .. "/nginx.pid")
end

-- Stop and start again on the same port and prefix. Nchan's memory store does not survive.
function Server:restart()
  self:stop()
  self:_launch()
end

-- Reload the configuration (HUP to the master): wait (bounded) until new workers run and
-- the old ones, with the connections they held, are gone. Nchan's memory store is lost.
function Server:reload()
  local old = {}
  for _, w in ipairs(children(self.pid)) do old[w] = true end
  kill(self.pid, "HUP")
  return wait_until(10, function()
    local fresh = false
    for _, w in ipairs(children(self.pid)) do
      if old[w] then return false end
      fresh = true
    end
    return fresh and can_connect(self.port)
  end) or false
end

-- Remove the prefix directory (after stop).
function Server:cleanup()
  if self.pid then self:stop() end
  if self.prefix:match("^/tmp/") then os.execute("rm -rf " .. sh_quote(self.prefix)) end
end

-- opts: subscriber_timeout (nginx time, default "2s"), buffer_length (default 1000).
function M.start(opts)
  opts = opts or {}
  local template = assert(slurp(HERE .. "/nchan.conf"), "spec/support/nchan.conf not found")
  local prefix = os.tmpname()          -- a fresh file name; replace it with a directory
  os.remove(prefix)
  prefix = prefix .. "-nchan"
  assert(proc.ok("mkdir -m 700 " .. sh_quote(prefix)), "cannot create " .. prefix)
  local is_root = (io.popen("id -u"):read("*l") or "") == "0"
  -- a self-signed certificate for 127.0.0.1: the HTTPS listener (TLS, HTTP/2 by ALPN)
  assert(proc.ok(("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 "
    .. "-addext subjectAltName=IP:127.0.0.1 -keyout %s -out %s >/dev/null 2>&1"):format(
      sh_quote(prefix .. "/key.pem"), sh_quote(prefix .. "/cert.pem"))), "openssl req failed")
  local self = setmetatable({ prefix = prefix, cafile = prefix .. "/cert.pem" }, Server)
  -- A port M.free_ports found free can be taken before nginx binds it: an outgoing connection
  -- elsewhere may get it as its source port, and nginx then fails with "Address already in
  -- use". Ports the caller did not choose are chosen again then (bounded: 5 tries).
  for try = 1, 5 do
    local free = M.free_ports(3)
    local fields = {
      prefix = prefix,
      port = tostring(opts.port or free[1]),
      h2port = tostring(opts.h2port or free[2]),
      tlsport = tostring(opts.tlsport or free[3]),
      subscriber_timeout = opts.subscriber_timeout or "2s",
      buffer_length = tostring(opts.buffer_length or 1000),
      -- as root, workers would run as nobody and could not use the temp prefix
      user = is_root and "user root;" or "",
    }
    local conf = template:gsub("%${([%w_]+)}", function(k)
      return assert(fields[k], "nchan.conf: unknown field " .. k)
    end)
    local f = assert(io.open(prefix .. "/nginx.conf", "wb"))
    f:write(conf)
    f:close()
    self.port, self.h2port, self.tlsport =
      tonumber(fields.port), tonumber(fields.h2port), tonumber(fields.tlsport)
    local ok, err = pcall(self._launch, self)
    if ok then return self end
    local chosen = opts.port or opts.h2port or opts.tlsport
    if try == 5 or chosen or not tostring(err):find("Address already in use", 1, true) then
      error(err, 0)
    end
    os.remove(prefix .. "/error.log")
  end
end

return M
