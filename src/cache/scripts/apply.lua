#!lua flags=allow-key-locking
-- apply: one invalidation event in one round trip: delete entries (and their leases, which
-- drops fills in flight), bump tag counters, advance version keys (never backwards).
-- Idempotent in effect: a redelivered event deletes nothing new, re-bumped tags only cost a
-- reload, and versions at or below the known one change nothing.
-- KEYS[1] stats, KEYS[2] {p}:tb (the time of the latest tag bump, read by fill.lua), then nKeys pairs (entry, lease), then nTags tag keys, then nVersions pairs
-- (version key, lease of the same-named entry).  ARGV[1] nKeys  ARGV[2] nTags
-- ARGV[3] nVersions  ARGV[4..] versions.
-- Revoking the lease matters when the version key was evicted: a load in flight would
-- otherwise be free to fill an older row and write its lower version back.
-- Returns {entries removed, tags bumped, versions advanced}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nKeys, nTags, nVersions = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local removed, advanced = 0, 0
local i = 3
for _ = 1, nKeys do
  removed = removed + redis.call('UNLINK', KEYS[i])
  redis.call('UNLINK', KEYS[i + 1])
  i = i + 2
end
for _ = 1, nTags do
  local old = tonumber(redis.call('GET', KEYS[i]) or '0')
  redis.call('SET', KEYS[i], string.format('%d', math.max(old + 1, now)))
  i = i + 1
end
if nTags > 0 then
  -- When this prefix last bumped a tag (fill.lua).
  local last = tonumber(redis.call('GET', KEYS[2]) or '0')
  redis.call('SET', KEYS[2], string.format('%d', math.max(last, now)))
end
for j = 1, nVersions do
  local v = tonumber(ARGV[3 + j])
  local current = redis.call('GET', KEYS[i])
  -- "" = set by a first load in flight, version unknown (acquire.lua).
  if (not current) or current == '' or v > tonumber(current) then
    redis.call('SET', KEYS[i], ARGV[3 + j])
    advanced = advanced + 1
  end
  redis.call('UNLINK', KEYS[i + 1])
  i = i + 2
end
redis.call('HINCRBY', KEYS[1], 'invalidations', nKeys)
redis.call('HINCRBY', KEYS[1], 'tag_bumps', nTags)
redis.call('HINCRBY', KEYS[1], 'version_bumps', advanced)
return { removed, nTags, advanced }
