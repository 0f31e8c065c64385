#!lua flags=allow-key-locking
-- acquire: the writing half of a cache read, for when the read-only hit script (hit.lua) did
-- not serve a fresh entry, or the client expects a miss. It validates the entry again (a fill
-- may have landed since), and on a miss, a stale entry or an early refresh tries the
-- single-flight lease, returning the tag counters to capture before loading. It counts
-- nothing and samples nothing: the engine counts what the reply says, in the isolate.
-- KEYS[1] entry hash   KEYS[2] lease
-- KEYS[3] {p}:tb, the time of the prefix's latest tag bump (created by a granted lease)
-- KEYS[4..] the version key when ARGV[5] == '1', then the tag counter key of each name in
--   ARGV[6] (a JSON array, same order); the first ARGV[7] of them are the caller's own tags,
--   whose counters a granted lease captures (tg, in that order). Every key is declared.
-- ARGV[1] lease token   ARGV[2] lease ttl ms   ARGV[3] "1" = take the lease even on a fresh
-- hit (early refresh)   ARGV[4] the client's load-time estimate in ms ("" = none), announced
-- with a granted lease when the entry has no measured load time (lt)   ARGV[8] "1" = an entry
-- with undeclared tags is a miss (take the lease); otherwise the reply is only s = MISS,
-- r = need and need (every tag name of the entry): declare them and ask again
-- Reply (JSON): now, s, r (format, version, tag, need, expired), need (see hit.lua), and with a
-- granted lease tok, tg (tag counters) and cv (the version key's value, 0 when absent; only
-- with a version key); a waiter gets wait (the lease's PTTL), eta and est (see hit.lua).
-- Announced load (src/cache/read/wait.ts): a granted lease holds "<token>.<estimate ms>.<granted
-- at ms>" and `tok` returns that whole value (fill and release compare it as an opaque token).
--! include lib/entry.lua
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nowText = string.format('%d', now)
local entry, lease, tagClock = KEYS[1], KEYS[2], KEYS[3]
local token, leaseTtl = ARGV[1], tonumber(ARGV[2])
local early = ARGV[3] == '1'
local verKey, names, declared = declaredKeys(4, ARGV[5], ARGV[6])
local nCapture = tonumber(ARGV[7])

-- The lease value carries the holder's expected load time and the grant time (see header).
local leaseValue = token
local function announce(estimate)
  local ms = math.floor(tonumber(estimate) or 0)
  if ms < 0 then ms = 0 end
  leaseValue = token .. '.' .. string.format('%d', ms) .. '.' .. nowText
end

-- A tag counter read while validating: created at the current time when missing (see
-- capturedCounter in lib/entry.lua).
local function counter(key) return capturedCounter(key, nowText) end

-- The lease and its reply (lib/entry.lua, shared with fill.lua's reload grant).
local function grant(out) grantReply(out, leaseValue, verKey, names, declared, nCapture, nowText) end
local function tryLease() return takeLease(lease, leaseValue, leaseTtl, verKey, tagClock, now) end

local out = { now = now }
local f = redis.call('HMGET', entry, 'v', 'ver', 'fu', 'su', 'tg', 'lt', 'ct', 'xu', 'tk', 'id', 'vk', 'fl')
local value, ver, fu, su, tg, lt, ct, xu = f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]
-- Announce the entry's last measured load time, else the client's estimate.
if tonumber(lt) and tonumber(lt) > 0 then announce(lt) else announce(ARGV[4] or '') end
local reason, need = false, nil
if value then
  fu, su, xu = tonumber(fu), tonumber(su), tonumber(xu)
  reason, need = entryReason(verKey, ver, tg, declared, counter, f[9], names, nCapture, f[11], f[12])
  if reason == 'need' then
    -- An undeclared tag cannot be checked: the entry is not served (nor deleted: it may be
    -- valid). The caller learns the list and asks again; only when told to (ARGV[8], its last
    -- try: the tags changed between two calls) does this count as a miss that takes the lease.
    if ARGV[8] ~= '1' then
      return cjson.encode({ now = now, s = 'MISS', r = 'need', need = need })
    end
    out.need = need
  end
  if reason then
    if reason ~= 'need' then redis.call('DEL', entry) end
    value = false
  elseif now >= su then
    -- Past the grace window but kept for fail-safe: a miss that still carries the old value.
    if now < xu then reason = 'expired' else value = false end
  end
end

if value and not reason and now < fu then
  out.s = 'HIT'
  if early and tryLease() then
    grant(out)
  end
elseif value and not reason then
  out.s = 'STALE'
  if tryLease() then
    grant(out)
  else
    -- Someone else is refreshing it: the caller starts no refresh of its own.
    out.wait = redis.call('PTTL', lease)
  end
else
  out.s = 'MISS'
  if tryLease() then
    grant(out)
  else
    out.wait = redis.call('PTTL', lease)
    announced(out, lease, now)
  end
end
putEntry(out, value, ver, fu, su, lt, ct, reason, f[10])
if reason then out.r = reason end
return encodeReply(out, value)
