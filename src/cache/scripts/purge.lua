-- purge: one bounded step of a pattern purge (SCAN MATCH/COUNT + UNLINK), never KEYS.
-- ARGV[1] prefix   ARGV[2] glob over logical keys   ARGV[3] cursor   ARGV[4] keys to examine
-- (budget)  ARGV[5] SCAN COUNT per call. KEYS[1] stats. Returns {cursor, deleted, scanned}.
local prefix, glob = ARGV[1], ARGV[2]
local cursor = ARGV[3]
local budget, count = tonumber(ARGV[4]), tonumber(ARGV[5])
local entryPrefix = prefix .. ':e:'
local leasePrefix = prefix .. ':l:'
local deleted, scanned = 0, 0
repeat
  local page = redis.call('SCAN', cursor, 'MATCH', entryPrefix .. glob, 'COUNT', count)
  cursor = page[1]
  for _, key in ipairs(page[2]) do
    deleted = deleted + redis.call('UNLINK', key)
    redis.call('UNLINK', leasePrefix .. string.sub(key, #entryPrefix + 1))
  end
  scanned = scanned + count
until cursor == '0' or scanned >= budget
redis.call('HINCRBY', KEYS[1], 'purged', deleted)
return { cursor, deleted, scanned }
