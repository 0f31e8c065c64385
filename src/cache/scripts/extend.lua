#!lua flags=allow-key-locking
-- extend: keeps a lease alive while its holder is still loading (src/cache/read/keep-alive.ts),
-- only if it is still ours. A load that outlives its lease loses the single flight: another
-- caller takes the lease and loads too, and the first fill is refused. The lease's short TTL
-- still frees a key within leaseTtl when its holder dies (it stops extending).
-- KEYS[1] lease   KEYS[2] the version key, when the load has one (ARGV[3] == '1'): its ""
--   mark (a first load, version unknown, set by acquire.lua with the lease's TTL) must live as
--   long as the lease, or the fill reads it as evicted and refuses itself
-- ARGV[1] token (the lease's whole value)   ARGV[2] lease ttl ms   ARGV[3] "1" = KEYS[2] given
-- Reply: 1 when extended, 0 when the lease is gone or someone else's (a write revoked it).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if ARGV[3] == '1' and redis.call('GET', KEYS[2]) == '' then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 1
