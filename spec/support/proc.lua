-- Small process and file helpers shared by the spec support modules and specs.
local M = {}

function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
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

-- run a shell command; returns its output (stdout and stderr) and, as
-- os.execute does in 5.2+, ok, "exit", code. The shell prints the exit code:
-- Lua 5.1's (and LuaJIT's) popen close() gives no status
function M.run(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"~exit $?\""))
  local all = p:read("*a")
  p:close()
  local out, code = all:match("^(.*)~exit (%d+)\n$")
  code = tonumber(code)
  return out or all, code == 0, "exit", code
end

-- true when the shell command exits 0 (os.execute gives true in 5.2+, the
-- status number 0 in 5.1 and LuaJIT)
function M.ok(cmd)
  local r = os.execute(cmd)
  return r == true or r == 0
end

-- how many lines `cmd` prints (for counting /proc entries)
function M.count(cmd)
  return tonumber((M.run(cmd .. " | wc -l")))
end

return M
