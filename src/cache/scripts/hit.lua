#!lua flags=no-writes,allow-key-locking
-- hit: the read-only first look of a cache read. It writes nothing (Redis enforces no-writes),
-- so `EVALSHA_RO` of it may be served by a read replica, and it locks only its KEYS.
-- It validates the entry (version key, tag counters) and says what it found; a miss, a stale
-- entry or an invalid one is the writing acquire script's to handle (lease, tag counters).
-- KEYS[1] entry hash   KEYS[2] lease
-- KEYS[3..] the version key when ARGV[1] == '1', then the tag counter key of each name in
--   ARGV[2] (a JSON array, same order): every key the script reads is declared. ARGV[3] how
--   many of those names (from the front) are the caller's own tags: an entry filled without one
--   of them is not served (lib/entry.lua, entryReason).
-- Checks (optional, src/cache/read/checks.ts): ARGV[4] the number of KEYS above, ARGV[5] a JSON
--   array of [hasVersion (1/0), tag names, own count] per other entry to check, whose keys follow in
--   KEYS in that order (entry, the version key when it has one, the tag counters). Each is
--   answered in `ck`: the entry's fill id when it is fresh and valid now, else false. It is
--   how a late reader of another key learns, with no request of its own, that the value its
--   isolate's flight is about to hand it was still valid after it began. A lease check,
--   [hasVersion, own tag names, lease value, captured version, captured counters], declares
--   the entry's lease in place of the entry and is answered true when the lease, the version
--   key and those counters are still as the grant left them: nothing invalidated the entry
--   since the load under that lease began.
-- Reply (JSON): now, s = HIT | STALE | MISS, r = why an entry was not served (format, version, tag,
--   need, expired); with a value: v (the stored JSON itself, spliced in: see encodeReply),
--   ver, fu, su, lt, ct, fs; with r = need: need, the names
--   of ALL the entry's tags (it has tags the caller did not declare: declare them and ask
--   again); on a MISS or STALE: wait, the lease's PTTL (-2 = no lease: nobody is loading);
--   on a MISS, when
--   the holder announced its load time, eta (ms until it expects to be done, negative once
--   overdue) and est (the announced load time). With a value: id, the fill's identity.
--! include lib/entry.lua
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local entry, lease = KEYS[1], KEYS[2]
-- A missing counter (never created, or evicted) validates nothing: acquire recreates it at the
-- current time, so no older snapshot matches it again.
local function readCounter(key) return redis.call('GET', key) end

-- A fresh HIT's reply, written out by hand (the common answer; every other goes through
-- putEntry and encodeReply, which it matches field for field: test/node/cache/reply.test.ts).
-- cjson's encoder made this script slowest when hits come one at a time, as a Worker's do
-- (bench/results/profile-notes.md, sessions 9 and 10). The fields come as HMGET read them. As
-- fill.lua writes them they are digits (`ver` "" for a `set`; `lt`, `ct` possibly missing) and
-- go in as stored; anything else is converted as cjson would: numbers through tonumber, `ver`
-- escaped, a missing `ver` (HMGET's false) false.
local function hitReply(value, ver, fu, su, lt, ct, id)
  local lts, cts = lt or '', ct or ''
  id = fillId(id)
  local ids = id and (',"id":"' .. id .. '"') or ''
  if ver and not string.find(fu .. su .. ver .. lts .. cts, '%D') then
    return '{"now":' .. now .. ',"s":"HIT","ver":"' .. ver .. '","fu":' .. fu .. ',"su":' .. su
      .. (lts ~= '' and (',"lt":' .. lts) or '') .. (cts ~= '' and (',"ct":' .. cts) or '')
      .. ids .. ',"fs":false,"v":' .. value .. '}'
  end
  local verJson = 'false'
  if ver then
    verJson = string.find(ver, '^%d*$') and ('"' .. ver .. '"') or cjson.encode(ver)
  end
  local out = '{"now":' .. tostring(now) .. ',"s":"HIT","ver":' .. verJson
    .. ',"fu":' .. tostring(tonumber(fu)) .. ',"su":' .. tostring(tonumber(su))
  lt, ct = tonumber(lt), tonumber(ct)
  if lt then out = out .. ',"lt":' .. tostring(lt) end
  if ct then out = out .. ',"ct":' .. tostring(ct) end
  return out .. ids .. ',"fs":false,"v":' .. value .. '}'
end

-- The checks other readers of this isolate asked to ride on this read (see the header), as the
-- reply's `"ck"` member; "" when there are none (nearly always: then this costs one compare).
local nMain = #KEYS
local checks = ''
if ARGV[5] then
  nMain = tonumber(ARGV[4])
  local pos = nMain + 1
  local found = {}
  for i, spec in ipairs(cjson.decode(ARGV[5])) do
    local e, checkVer, names = KEYS[pos], false, spec[2]
    pos = pos + 1
    if spec[1] == 1 then
      checkVer = KEYS[pos]
      pos = pos + 1
    end
    local declared = {}
    for j, name in ipairs(names) do declared[name] = KEYS[pos + j - 1] end
    pos = pos + #names
    if type(spec[3]) == 'string' then
      -- A lease check (`e` is the lease): still held with the granted value, the version key
      -- as the grant read it (missing or "" read as 0, as grantReply does) and each own tag's
      -- counter as it captured it. Any invalidation since the grant changed one of them.
      local held = redis.call('GET', e) == spec[3]
      if held and checkVer then
        local cv = redis.call('GET', checkVer)
        held = tonumber((cv and cv ~= '') and cv or '0') == tonumber(spec[4])
      end
      for j, name in ipairs(names) do
        held = held and redis.call('GET', declared[name]) == spec[5][j]
      end
      found[i] = held and 'true' or 'false'
    else
      local c = redis.call('HMGET', e, 'id', 'ver', 'fu', 'su', 'tg', 'tk', 'vk', 'fl')
      local id, cfu, csu = fillId(c[1]), tonumber(c[3]), tonumber(c[4])
      -- Fresh and valid now, by the rules of a hit (entryReason fails closed on a missing
      -- counter or an undeclared tag), and with an id a reply can carry as is.
      local ok = id and cfu and csu and now < cfu and now < csu
        and not entryReason(checkVer, c[2], c[5], declared, readCounter, c[6], names, spec[3], c[7], c[8])
      found[i] = ok and ('"' .. id .. '"') or 'false'
    end
  end
  checks = ',"ck":[' .. table.concat(found, ',') .. ']'
end
-- A reply with the checks' answers spliced in before its closing brace.
local function answer(reply)
  if checks == '' then return reply end
  return string.sub(reply, 1, -2) .. checks .. '}'
end

local f = redis.call('HMGET', entry, 'v', 'ver', 'fu', 'su', 'tg', 'lt', 'ct', 'xu', 'tk', 'tc', 'id', 'vk', 'fl')
local value, ver, fu, su, tg, lt, ct, xu = f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]

-- The common answer first, with no tables, no cjson and no calls into lib/entry.lua: a fresh
-- entry whose version, when it has a version key, is current, and whose tags are exactly those
-- declared with their counters unchanged. Untagged: none declared, none stored. Tagged: the
-- declared names (ARGV[2]) are byte for byte the list fill.lua stored with the entry (`tk`,
-- which is what a reader sends once it learned them), so KEYS[i] after the version key is the
-- counter of the i-th stored name, and the counters read now, each followed by a comma, equal
-- the snapshot the fill stored in that order (`tc`); a missing counter ("-") equals nothing.
-- The general path below gives the same reply (test/node/cache/hit-fast.test.ts); this costs
-- Redis less per hit when hits come one at a time (bench/results/profile-notes.md, sessions 10
-- and 11). Anything else (other names or order, a bumped or missing counter, a version key
-- that is missing or "", a versioned entry read without a version key, a non-numeric field,
-- an entry stored before `tk` existed, or by another engine format than this one's) falls
-- through to the general path, which decides it exactly as before.
local tk, fl = f[9], f[13]
if value and (not fl or fl == FORMAT_TEXT)
  and ((ARGV[2] == '[]' and (not tg or tg == '')) or (ARGV[2] ~= '[]' and tk == ARGV[2])) then
  local freshUntil, staleUntil = tonumber(fu), tonumber(su)
  if freshUntil and staleUntil and now < freshUntil and now < staleUntil then
    local versioned = ARGV[1] == '1'
    local current = versioned and tonumber(redis.call('GET', KEYS[3]) or '')
    local stored = tonumber(ver)
    if (not versioned and f[12] ~= '1') or (current and stored and stored >= current) then
      local counters = ''
      for i = versioned and 4 or 3, nMain do
        counters = counters .. (redis.call('GET', KEYS[i]) or '-') .. ','
      end
      if counters == (f[10] or '') then return answer(hitReply(value, ver, fu, su, lt, ct, f[11])) end
    end
  end
end

local verKey, names, declared = declaredKeys(3, ARGV[1], ARGV[2])
local out = { now = now }
local reason = false
if value then
  fu, su, xu = tonumber(fu), tonumber(su), tonumber(xu)
  reason, out.need = entryReason(verKey, ver, tg, declared, readCounter, tk, names, ARGV[3], f[12], fl)
  if reason then
    value = false
  elseif now >= su then
    -- Past the grace window but kept for fail-safe: a miss that still carries the old value.
    if now < xu then reason = 'expired' else value = false end
  end
end

if value and not reason and now < fu then
  return answer(hitReply(value, ver, f[3], f[4], lt, ct, f[11])) -- as stored: fu, su are numbers now
elseif value and not reason then
  out.s = 'STALE'
  -- Whether someone is refreshing it already (> 0): then the caller starts no refresh.
  out.wait = redis.call('PTTL', lease)
else
  out.s = 'MISS'
  out.wait = redis.call('PTTL', lease)
  if out.wait > 0 then announced(out, lease, now) end
end
putEntry(out, value, ver, fu, su, lt, ct, reason, f[11])
if reason then out.r = reason end
return answer(encodeReply(out, value))
