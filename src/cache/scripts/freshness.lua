#!lua flags=no-writes,allow-key-locking
-- freshness: how long each entry stays fresh, for the warmer (one round trip for N keys).
-- KEYS: entry keys. Returns JSON {now = Redis time, f = per key the ms until fresh-until
-- (negative once stale) or false when absent}. `now` lets the warmer tell its writes when
-- their data was loaded (tagsAsOf).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 1, #KEYS do
  local fu = redis.call('HGET', KEYS[i], 'fu')
  if fu then out[i] = tonumber(fu) - now else out[i] = false end
end
return cjson.encode({ now = now, f = out })
