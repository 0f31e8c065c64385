#!lua flags=allow-key-locking
-- bump-tags: invalidates every entry computed under the current counters of these tags.
-- O(number of tags): entries compare their snapshot on read, nothing is scanned.
-- The new value is max(old + 1, now) so a counter recreated after eviction never repeats.
-- KEYS: tag counter keys, then {p}:tb (the time of the latest tag bump, read by fill.lua),
-- then the stats hash. Returns the new counters.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 1, #KEYS - 2 do
  local old = tonumber(redis.call('GET', KEYS[i]) or '0')
  local new = math.max(old + 1, now)
  redis.call('SET', KEYS[i], string.format('%d', new))
  out[i] = string.format('%d', new)
end
redis.call('HINCRBY', KEYS[#KEYS], 'tag_bumps', #KEYS - 2)
-- When this prefix last bumped a tag: a fill of data loaded before it cannot trust a tag
-- counter that has since gone missing (fill.lua).
if #KEYS > 2 then
  local last = tonumber(redis.call('GET', KEYS[#KEYS - 1]) or '0')
  redis.call('SET', KEYS[#KEYS - 1], string.format('%d', math.max(last, now)))
end
return out
