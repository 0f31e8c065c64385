-- purge: one bounded step of a pattern purge (SCAN MATCH/COUNT + UNLINK), never KEYS.
-- The one script without allow-key-locking: the keys it deletes are found by SCAN, so they
-- cannot be declared, and Upstash runs it under the database's global lock. It is an admin
-- operation (purgePattern), bounded by its budget, never on a read path.
-- Matches entries AND leases ({p}:[el]:glob): a key being loaded has a lease but no entry yet,
-- and deleting that lease is what stops the load's (pre-purge) value from landing afterwards.
-- ARGV[1] prefix   ARGV[2] glob over logical keys   ARGV[3] cursor   ARGV[4] keys to examine
-- (budget)  ARGV[5] SCAN COUNT per call. KEYS[1] stats. Returns {cursor, entries deleted, scanned}.
local prefix, glob = ARGV[1], ARGV[2]
local cursor = ARGV[3]
local budget, count = tonumber(ARGV[4]), tonumber(ARGV[5])
local entryPrefix = prefix .. ':e:'
local deleted, scanned = 0, 0
repeat
  local page = redis.call('SCAN', cursor, 'MATCH', prefix .. ':[el]:' .. glob, 'COUNT', count)
  cursor = page[1]
  for _, key in ipairs(page[2]) do
    local n = redis.call('UNLINK', key)
    if string.sub(key, 1, #entryPrefix) == entryPrefix then deleted = deleted + n end
  end
  scanned = scanned + count
until cursor == '0' or scanned >= budget
redis.call('HINCRBY', KEYS[1], 'purged', deleted)
return { cursor, deleted, scanned }
