-- LÖVE configuration: a small window, no audio (none is needed, and a
-- machine without a sound device would only print warnings)
function love.conf(t)
  t.identity = "longpoll-example"
  t.window.title = "lua-longpoll in LÖVE"
  t.window.width = 640
  t.window.height = 360
  t.modules.audio = false
  t.modules.sound = false
  t.modules.joystick = false
  t.modules.physics = false
  t.modules.video = false
end
