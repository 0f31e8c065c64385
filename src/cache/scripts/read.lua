-- read: one round trip for a cache read.
-- Validates the entry (version key, tag counters), samples hot keys, and on a miss or a stale
-- entry tries the single-flight lease, returning the tag counters to capture before loading.
-- KEYS[1] entry hash   KEYS[2] lease   KEYS[3] stats hash   KEYS[4] version key (or "")
-- KEYS[5..] tag counter keys of the caller's tags (captured for the fill)
-- Reply (JSON): now, s, and with a granted lease tok, tg (tag counters) and cv (the version
-- key's value, 0 when absent; only with a version key)
-- ARGV[1] lease token ("" = never take the lease: peek)   ARGV[2] lease ttl ms
-- ARGV[3] sample draw [0,1)   ARGV[4] sample rate (0 = off)   ARGV[5] hot window ms
-- ARGV[6] hot windows kept   ARGV[7] logical key   ARGV[8] prefix
-- ARGV[9] pending client counters, flat "field,delta,field,delta" ("" = none)
-- ARGV[10] "1" = take the lease even on a fresh hit (early refresh): the second read of a
--   request that was already counted, so neither a hit nor a hot-key sample here
-- ARGV[11] "1" = a waiter polling for another caller's load: counted once by the client,
--   so neither a miss nor a hot-key sample here
-- ARGV[12] the client's load-time estimate in ms ("" = none), announced with a granted lease
--   when the entry has no measured load time (lt)
-- Announced load (src/cache/read/wait.ts): a granted lease holds "<token>.<estimate ms>.<granted
-- at ms>" and `tok` returns that whole value (fill and release compare it as an opaque token);
-- a waiter gets `eta`, the ms until the holder expects to be done (negative: overdue), and
-- `est`, the load time it announced.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nowText = string.format('%d', now)
local entry, lease, stats, verKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local token, leaseTtl = ARGV[1], tonumber(ARGV[2])
local prefix = ARGV[8]

-- The lease value carries the holder's expected load time and the grant time (see header).
local leaseValue = token
local function announce(estimate)
  local ms = math.floor(tonumber(estimate) or 0)
  if ms < 0 then ms = 0 end
  leaseValue = token .. '.' .. string.format('%d', ms) .. '.' .. nowText
end

if ARGV[9] ~= '' then
  for field, delta in string.gmatch(ARGV[9], '([^,]+),([^,]+)') do
    redis.call('HINCRBY', stats, field, delta)
  end
end

local polling = ARGV[11] == '1'
local early = ARGV[10] == '1'
local rate = tonumber(ARGV[4])
if not polling and not early and rate > 0 and tonumber(ARGV[3]) < rate then
  local windowMs = tonumber(ARGV[5])
  local hot = prefix .. ':hot:' .. math.floor(now / windowMs)
  redis.call('ZINCRBY', hot, 1 / rate, ARGV[7])
  redis.call('PEXPIRE', hot, windowMs * (tonumber(ARGV[6]) + 1))
end

-- Tag counters start at the current time, not 0, so a counter lost to eviction comes back
-- with a value no entry was computed under: its entries turn invalid instead of valid again.
local function counter(key)
  local c = redis.call('GET', key)
  if not c then
    c = nowText
    redis.call('SET', key, c)
  end
  return c
end

local function capture()
  local snap = {}
  for i = 5, #KEYS do
    snap[#snap + 1] = counter(KEYS[i])
  end
  return snap
end

-- The version the key had when the lease was granted (0 = never written): a negative entry
-- ("not found") is stored under it, so any later version advance invalidates it.
local function grant(out)
  out.tok = leaseValue
  out.tg = capture()
  if verKey ~= '' then out.cv = tonumber(redis.call('GET', verKey) or '0') end
end

local function tryLease()
  if token == '' then return false end
  if redis.call('SET', lease, leaseValue, 'NX', 'PX', leaseTtl) then return true end
  return false
end

-- Tells a waiter what the current holder announced: eta (ms until its load should be done,
-- negative once overdue) and est (the announced load time); nothing when it announced none.
local function announced(out)
  local held = redis.call('GET', lease)
  if not held then return end
  local ms, at = string.match(held, '%.(%d+)%.(%d+)$')
  if not ms or tonumber(ms) <= 0 then return end
  out.eta = tonumber(at) + tonumber(ms) - now
  out.est = tonumber(ms)
end

local f = redis.call('HMGET', entry, 'v', 'ver', 'fu', 'su', 'tg', 'lt', 'ct', 'xu')
local value, ver, fu, su, tg, lt, ct, xu = f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]
-- Announce the entry's last measured load time, else the client's estimate.
if tonumber(lt) and tonumber(lt) > 0 then announce(lt) else announce(ARGV[12] or '') end
local reason = false
if value then
  fu, su, xu = tonumber(fu), tonumber(su), tonumber(xu)
  if verKey ~= '' then
    local current = redis.call('GET', verKey)
    if ver == '' then
      reason = 'version'
    elseif not current then
      -- A missing version key next to a versioned entry means it was evicted: trust nothing.
      -- Except a negative entry at version 0 ("nothing committed yet"): its fill does not
      -- create the version key, so that probing unknown ids leaves no key without a TTL.
      if ver ~= '0' then reason = 'version' end
    elseif tonumber(ver) < tonumber(current) then
      reason = 'version'
    end
  end
  if not reason and tg ~= '' then
    local names = cjson.decode(tg)
    for name, seen in pairs(names) do
      if counter(prefix .. ':t:' .. name) ~= seen then
        reason = 'tag'
        break
      end
    end
  end
  if reason then
    redis.call('DEL', entry)
    redis.call('HINCRBY', stats, 'invalidated_reads', 1)
    value = false
  elseif now >= su then
    -- Past the grace window but kept for fail-safe: a miss that still carries the old value.
    if now < xu then reason = 'expired' else value = false end
  end
end

local out = { now = now }
if value and not reason and now < fu then
  if not early then redis.call('HINCRBY', stats, 'hits', 1) end
  out.s = 'HIT'
  if early and tryLease() then
    grant(out)
  end
elseif value and not reason then
  redis.call('HINCRBY', stats, 'stale_hits', 1)
  out.s = 'STALE'
  if tryLease() then
    grant(out)
  end
else
  if not polling then redis.call('HINCRBY', stats, 'misses', 1) end
  out.s = 'MISS'
  if tryLease() then
    grant(out)
  elseif token ~= '' then
    out.wait = redis.call('PTTL', lease)
    announced(out)
  end
end
if value then
  out.v = value
  out.ver = ver
  out.fu = fu
  out.su = su
  out.lt = tonumber(lt)
  out.ct = tonumber(ct)
  out.fs = (reason == 'expired')
end
if reason then out.r = reason end
return cjson.encode(out)
