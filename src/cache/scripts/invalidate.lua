#!lua flags=allow-key-locking
-- invalidate: deletes entries and their leases in one round trip, however many keys.
-- Deleting the lease is what makes a load already in flight drop its fill.
-- KEYS: entry1, lease1, entry2, lease2, ...; the last key is the stats hash.
local stats = KEYS[#KEYS]
local removed = 0
for i = 1, #KEYS - 1, 2 do
  removed = removed + redis.call('UNLINK', KEYS[i])
  redis.call('UNLINK', KEYS[i + 1])
end
redis.call('HINCRBY', stats, 'invalidations', (#KEYS - 1) / 2)
return removed
