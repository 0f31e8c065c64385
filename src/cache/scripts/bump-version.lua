#!lua flags=allow-key-locking
-- bump-version: records the newest committed version of an entity; never moves backwards.
-- Entries with an older version become invalid on their next read, and fills of older rows
-- are refused. The same-named entry's lease is revoked so a load in flight cannot write an
-- older version back if the version key had been evicted.
-- KEYS[1] version key  KEYS[2] stats  KEYS[3] lease   ARGV[1] version. Returns {previous, current}.
local previous = redis.call('GET', KEYS[1])
redis.call('UNLINK', KEYS[3])
local v = tonumber(ARGV[1])
-- "" = a first load in flight set it, version unknown (acquire.lua): no previous version.
if previous == '' then previous = false end
if (not previous) or v > tonumber(previous) then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('HINCRBY', KEYS[2], 'version_bumps', 1)
  return { previous or '', ARGV[1] }
end
return { previous, previous }
