-- rawserver script for spec/host/stress_test.c: each response's header lines
-- arrive a few milliseconds apart, and the body is the request's path
-- without its slash (the id the client checks), on a keep-alive connection.
return function()
  return {
    "request",
    { send = "HTTP/1.1 200 OK\r\n" }, { sleep = 2 },
    { send = "X-Slow: 1\r\n" }, { sleep = 2 },
    { send = "X-Slow: 2\r\nContent-Type: text/plain\r\n" }, { sleep = 2 },
    function(line)
      local id = line:match("^%S+ /(%w*)") or ""
      return { send = ("Content-Length: %d\r\n\r\n%s"):format(#id, id) }
    end,
    "again",
  }
end
