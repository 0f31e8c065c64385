-- inspect: everything known about one key, for admin and tests (not on the hot path).
-- KEYS[1] entry  KEYS[2] lease  KEYS[3] version key (or "")   ARGV[1] prefix
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = { now = now, pttl = redis.call('PTTL', KEYS[1]), leasePttl = redis.call('PTTL', KEYS[2]) }
local f = redis.call('HGETALL', KEYS[1])
local entry = {}
for i = 1, #f, 2 do entry[f[i]] = f[i + 1] end
if entry.v then out.entry = entry end
if KEYS[3] ~= '' then out.version = redis.call('GET', KEYS[3]) end
if entry.tg and entry.tg ~= '' then
  local current = {}
  for name, _ in pairs(cjson.decode(entry.tg)) do
    current[name] = redis.call('GET', ARGV[1] .. ':t:' .. name) or false
  end
  out.tags = current
end
return cjson.encode(out)
