#!lua flags=no-writes,allow-key-locking
-- inspect: everything known about one key, for admin and tests (not on the hot path).
-- KEYS[1] entry  KEYS[2] lease  KEYS[3..] the version key when ARGV[1] == '1', then the tag
-- counter key of each name in ARGV[2] (a JSON array, same order). An entry tagged with names
-- the caller did not declare answers `need` (all its tag names): ask again with them.
--! include lib/entry.lua
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = { now = now, pttl = redis.call('PTTL', KEYS[1]), leasePttl = redis.call('PTTL', KEYS[2]) }
local verKey, _, declared = declaredKeys(3, ARGV[1], ARGV[2])
if verKey then out.version = redis.call('GET', verKey) end
local f = redis.call('HGETALL', KEYS[1])
local entry = {}
for i = 1, #f, 2 do entry[f[i]] = f[i + 1] end
if entry.v then out.entry = entry end
if entry.tg and entry.tg ~= '' then
  local current, all, missing = {}, {}, false
  for name, _ in pairs(cjson.decode(entry.tg)) do
    all[#all + 1] = name
    if declared[name] then
      current[name] = redis.call('GET', declared[name]) or false
    else
      missing = true
    end
  end
  if missing then out.need = all else out.tags = current end
end
return cjson.encode(out)
