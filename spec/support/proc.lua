-- Small process and file helpers shared by the spec support modules and specs.
local M = {}

function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

function M.shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

function M.self_pid()
  local s = M.read_file("/proc/self/stat")
  return s and tonumber(s:match("^(%d+)"))
end

-- true while the process exists and is not a zombie
function M.alive(pid)
  local s = M.read_file("/proc/" .. pid .. "/stat")
  if not s then return false end
  local state = s:match("^%d+ %b() (%a)")
  return state ~= nil and state ~= "Z" and state ~= "X"
end

-- run a shell command; returns its output (stdout and stderr) and os.execute's results
function M.run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok, how, code = p:close()
  return out, ok, how, code
end

-- how many lines `cmd` prints (for counting /proc entries)
function M.count(cmd)
  return tonumber((M.run(cmd .. " | wc -l")))
end

return M
