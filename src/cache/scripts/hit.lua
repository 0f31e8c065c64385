#!lua flags=no-writes,allow-key-locking
-- hit: the read-only first look of a cache read. It writes nothing (Redis enforces no-writes),
-- so `EVALSHA_RO` of it may be served by a read replica, and it locks only its KEYS.
-- It validates the entry (version key, tag counters) and says what it found; a miss, a stale
-- entry or an invalid one is the writing acquire script's to handle (lease, tag counters).
-- KEYS[1] entry hash   KEYS[2] lease
-- KEYS[3..] the version key when ARGV[1] == '1', then the tag counter key of each name in
--   ARGV[2] (a JSON array, same order): every key the script reads is declared.
-- Reply (JSON): now, s = HIT | STALE | MISS, r = why an entry was not served (version, tag,
--   need, expired); with a value: v (the stored JSON itself, spliced in: see encodeReply),
--   ver, fu, su, lt, ct, fs; with r = need: need, the names
--   of ALL the entry's tags (it has tags the caller did not declare: declare them and ask
--   again); on a MISS or STALE: wait, the lease's PTTL (-2 = no lease: nobody is loading);
--   on a MISS, when
--   the holder announced its load time, eta (ms until it expects to be done, negative once
--   overdue) and est (the announced load time).
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
local function hitReply(value, ver, fu, su, lt, ct)
  local lts, cts = lt or '', ct or ''
  if ver and not string.find(fu .. su .. ver .. lts .. cts, '%D') then
    return '{"now":' .. now .. ',"s":"HIT","ver":"' .. ver .. '","fu":' .. fu .. ',"su":' .. su
      .. (lts ~= '' and (',"lt":' .. lts) or '') .. (cts ~= '' and (',"ct":' .. cts) or '')
      .. ',"fs":false,"v":' .. value .. '}'
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
  return out .. ',"fs":false,"v":' .. value .. '}'
end

local f = redis.call('HMGET', entry, 'v', 'ver', 'fu', 'su', 'tg', 'lt', 'ct', 'xu')
local value, ver, fu, su, tg, lt, ct, xu = f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]

-- The common answer first, with no tables and no calls into lib/entry.lua: a fresh entry with
-- no tags (none declared either) whose version, when it has a version key, is current. The
-- general path below gives it the same reply (test/node/cache/hit-fast.test.ts); this costs
-- Redis ~15-20 µs less per hit when hits come one at a time (bench/results/profile-notes.md,
-- session 10). Anything unusual (a version key that is missing or "", a non-numeric field)
-- falls through to the general path, which decides it exactly as before.
if value and ARGV[2] == '[]' and (not tg or tg == '') then
  local freshUntil, staleUntil = tonumber(fu), tonumber(su)
  if freshUntil and staleUntil and now < freshUntil and now < staleUntil then
    local current = ARGV[1] == '1' and tonumber(redis.call('GET', KEYS[3]) or '')
    local stored = tonumber(ver)
    if ARGV[1] ~= '1' or (current and stored and stored >= current) then
      return hitReply(value, ver, fu, su, lt, ct)
    end
  end
end

local verKey, _, declared = declaredKeys(3, ARGV[1], ARGV[2])
local out = { now = now }
local reason = false
if value then
  fu, su, xu = tonumber(fu), tonumber(su), tonumber(xu)
  reason, out.need = entryReason(verKey, ver, tg, declared, readCounter)
  if reason then
    value = false
  elseif now >= su then
    -- Past the grace window but kept for fail-safe: a miss that still carries the old value.
    if now < xu then reason = 'expired' else value = false end
  end
end

if value and not reason and now < fu then
  return hitReply(value, ver, f[3], f[4], lt, ct) -- as stored: fu and su are numbers by now
elseif value and not reason then
  out.s = 'STALE'
  -- Whether someone is refreshing it already (> 0): then the caller starts no refresh.
  out.wait = redis.call('PTTL', lease)
else
  out.s = 'MISS'
  out.wait = redis.call('PTTL', lease)
  if out.wait > 0 then announced(out, lease, now) end
end
putEntry(out, value, ver, fu, su, lt, ct, reason)
if reason then out.r = reason end
return encodeReply(out, value)
