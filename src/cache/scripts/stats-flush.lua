#!lua flags=allow-key-locking
-- stats-flush: one isolate's batch of counters and hot-key samples, in one request.
-- KEYS[1] the isolate's stats shard   KEYS[2..] hot-key window zsets of the isolate's shard
-- ARGV[1] flat "field,delta,field,delta" ("" = none)   ARGV[2] hot-key window ttl ms
-- ARGV[3..] per hot-key zset (KEYS[i + 1] takes ARGV[i + 2]) a flat "weight,member,..."
--   list as JSON, so members may contain commas
for field, delta in string.gmatch(ARGV[1], '([^,]+),([^,]+)') do
  redis.call('HINCRBY', KEYS[1], field, delta)
end
local ttl = tonumber(ARGV[2])
for i = 2, #KEYS do
  local flat = cjson.decode(ARGV[i + 1])
  for j = 1, #flat, 2 do
    redis.call('ZINCRBY', KEYS[i], flat[j], flat[j + 1])
  end
  redis.call('PEXPIRE', KEYS[i], ttl)
end
return 1
