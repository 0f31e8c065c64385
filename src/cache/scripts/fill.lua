#!lua flags=allow-key-locking
-- fill / write-through: compare-and-set of a cache entry.
-- A fill (ARGV[1] = lease token) writes only while the lease still holds its token, so any
-- invalidation that ran during the load (it deletes the lease) drops it. Both fills and writes
-- refuse a version older than the newest one Redis knows, and a fill refuses a tag snapshot
-- that a tag bump has overtaken. It counts nothing: the engine counts what the reply says.
-- KEYS[1] entry   KEYS[2] lease   KEYS[3] {p}:tb, the time of the prefix's latest tag bump,
--   read when a bounded tag's counter is missing
-- KEYS[4..] the version key when ARGV[11] == '1', then the tag counter key of each name in
--   ARGV[8] (a JSON array, same order): every key the script touches is declared.
-- ARGV[1] lease token ("" = write-through: no lease needed, and any lease is revoked)
-- ARGV[2] value (JSON)   ARGV[3] version ("" = none)   ARGV[4] fresh ms   ARGV[5] grace ms
-- ARGV[6] absolute expiry ms ("" = none)   ARGV[7] fail-safe retention ms after grace
-- ARGV[8] tag names (JSON array)   ARGV[9] per name (JSON array, same order) one of
--   "<counter>"  captured by the read that granted the lease: must still be current;
--   "@<ms>"      known only after loading (tagsOf), or a write of data loaded at <ms> (Redis
--                time): counters are max(old + 1, now) timestamps, so one above <ms> was
--                bumped after the load began and the data may predate it;
--   ""           a write-through of data current now: take the counter as it is.
-- ARGV[10] load time ms   ARGV[11] "1" = KEYS[4] is the version key
-- ARGV[12] the fill's identity (`id`, unique per fill: the client draws it): a reply carrying
--   an entry carries it, so a late reader's check (hit.lua) can tell that the value it was
--   handed is the one the check found valid. `ct` cannot: two fills may share a millisecond.
-- ARGV[13] lease ttl ms to take the lease again when the fill is refused ("" = do not): the
--   loader's readers in the caller's isolate are waiting for a value read after the write
--   that refused this one, so the same request does what their next acquire would, and the
--   holder reloads one round trip sooner (src/cache/read/load.ts)   ARGV[14] how many of the
--   names in ARGV[8] are the caller's own tags, whose counters the new lease captures
-- Reply (JSON): ok, and r (lease, version, tag, expired) when refused; a refusal that took the
--   lease again adds tok, tg, cv as acquire.lua's grant does, and now.
--! include lib/entry.lua
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local entry, lease, tagClock = KEYS[1], KEYS[2], KEYS[3]
local token, version = ARGV[1], ARGV[3]
local verKey, names, declared = declaredKeys(4, ARGV[11], ARGV[8])

local function drop(reason)
  if token ~= '' and redis.call('GET', lease) == token then redis.call('DEL', lease) end
  local out = { ok = false, r = reason }
  local regrantTtl = tonumber(ARGV[13] or '')
  -- A write or a bump overtook the load (not merely the end of life): take the lease again,
  -- unless someone else holds it now (they are loading already). Same token, new announcement.
  if regrantTtl and token ~= '' and reason ~= 'expired' then
    local nowText = string.format('%d', now)
    local base, ms = string.match(token, '^[^.]+'), math.floor(tonumber(ARGV[10]) or 0)
    local value = base .. '.' .. string.format('%d', ms) .. '.' .. nowText
    -- Never the refused lease's value again (a load under 1 ms): a lease check of the refused
    -- load must not find its lease "still held" (hit.lua).
    if value == token then value = base .. '.' .. string.format('%d', ms + 1) .. '.' .. nowText end
    if takeLease(lease, value, regrantTtl, verKey, tagClock, now) then
      grantReply(out, value, verKey, names, declared, tonumber(ARGV[14]) or 0, nowText)
      out.now = now
    end
  end
  return cjson.encode(out)
end

if token ~= '' and redis.call('GET', lease) ~= token then return drop('lease') end

local current = false
local unknown = false
if verKey then
  if version == '' then return redis.error_reply('ERR edgecache: a versioned entry needs a version') end
  current = redis.call('GET', verKey)
  -- The read that granted a fill's lease left the version key in place (or "" when it had
  -- none). Gone now means evicted during the load, maybe with a newer version: fail closed.
  if token ~= '' and not current then return drop('version') end
  -- "" = present, version unknown: no lower bound yet.
  if current == '' then current, unknown = false, true end
  if current and tonumber(version) < tonumber(current) then return drop('version') end
  -- The version key may have been evicted; the entry's own version still guards against regress.
  local held = redis.call('HGET', entry, 'ver')
  if held and held ~= '' and tonumber(version) < tonumber(held) then return drop('version') end
end

local seens = cjson.decode(ARGV[9])
local snapshot = {}
-- The same snapshot for hit.lua's short path, which compares without cjson: the names as
-- given (ARGV[8], the very JSON array a reader declares back) and the counters in that order,
-- each followed by a comma.
local counters = {}
local any = false
for i, name in ipairs(names) do
  local seen = seens[i]
  local key = declared[name]
  local c = redis.call('GET', key)
  local bound = string.sub(seen, 1, 1) == '@' and string.sub(seen, 2) or nil
  if not c then
    -- Never bumped, or evicted. Without a bound: back at the current time, so no older
    -- snapshot matches. With one: the eviction may have taken a bump made after the load
    -- began. {p}:tb (the time of this prefix's latest tag bump) tells: below the
    -- bound, no tag was bumped since the load began, and the counter starts just below it (the
    -- check passes once). At or above it, or gone (evicted): fail closed; the next load lands.
    c = string.format('%d', now)
    if bound then
      local last = redis.call('GET', tagClock)
      if last and tonumber(last) < tonumber(bound) then
        c = string.format('%d', tonumber(bound) - 1)
      else
        redis.call('SET', key, c, 'PX', PROVISIONAL_COUNTER_MS)
        if not last then redis.call('SET', tagClock, c) end
        return drop('tag')
      end
    end
    -- Provisional until the entry is stored below (a later tag may still refuse the fill).
    redis.call('SET', key, c, 'PX', PROVISIONAL_COUNTER_MS)
  end
  if bound then
    -- >= : a bump in the very millisecond the load began may postdate the load's read.
    if tonumber(c) >= tonumber(bound) then return drop('tag') end
  elseif seen ~= '' and c ~= seen then
    return drop('tag')
  end
  snapshot[name] = c
  counters[#counters + 1] = c .. ','
  any = true
end

-- Whole milliseconds throughout (the client sends them so): PEXPIREAT below refuses a fraction,
-- and a refusal after HSET would leave the entry written without an expiry.
local fu = now + math.floor(tonumber(ARGV[4]))
local su = fu + math.floor(tonumber(ARGV[5]))
if ARGV[6] ~= '' then
  local cap = math.floor(tonumber(ARGV[6]))
  if cap < su then su = cap end
  if cap < fu then fu = cap end
end
if su <= now then
  -- A write-through whose value is already past its end of life also ends the old one's.
  if token == '' then redis.call('DEL', entry) end
  return drop('expired')
end
local xu = su + math.floor(tonumber(ARGV[7]))
-- Fail-safe retention never outlives an absolute expiry: past it the data is wrong, not old.
if ARGV[6] ~= '' and math.floor(tonumber(ARGV[6])) < xu then xu = math.floor(tonumber(ARGV[6])) end

redis.call('DEL', entry)
-- tg, tk and tc describe one snapshot and are only ever written together, here.
redis.call('HSET', entry, 'v', ARGV[2], 'ver', version, 'fu', fu, 'su', su, 'xu', xu,
  'tg', any and cjson.encode(snapshot) or '', 'tk', any and ARGV[8] or '',
  'tc', table.concat(counters), 'lt', ARGV[10], 'ct', now, 'id', ARGV[12] or '',
  'vk', verKey and '1' or '', 'fl', FORMAT_TEXT)
redis.call('PEXPIREAT', entry, xu)
-- The entry's counters outlive it from now on (lib/entry.lua, PROVISIONAL_COUNTER_MS): one
-- that expired would read as missing, and every entry under it as invalid.
for _, name in ipairs(names) do redis.call('PERSIST', declared[name]) end
-- Version 0 is a negative entry of a name nothing was ever committed under: creating its
-- version key would leave a key without a TTL behind every probed unknown id.
if verKey and ((not current and version ~= '0') or (current and tonumber(version) > tonumber(current))) then
  redis.call('SET', verKey, version)
elseif unknown then
  -- The "" the granting read left (acquire.lua) goes too, or it would invalidate this entry.
  redis.call('DEL', verKey)
end
-- A write-through revokes any lease too: a load that began before it must not land after it.
redis.call('DEL', lease)
return cjson.encode({ ok = true })
