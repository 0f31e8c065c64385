-- lib/entry.lua: what hit.lua, acquire.lua, fill.lua and inspect.lua share, pasted in place of
-- their `--! include lib/entry.lua` line by tools/build-lua.ts (a script cannot load another).

-- The declared keys after a script's fixed ones (KEYS[1 .. first - 1]): the version key when
-- `hasVersion` is '1', then the tag counter key of each name in the JSON array `namesJson`,
-- in order. Returns the version key (or false), the names, and name -> its counter key.
local function declaredKeys(first, hasVersion, namesJson)
  local verKey = false
  if hasVersion == '1' then
    verKey = KEYS[first]
    first = first + 1
  end
  -- No tags (most reads): no cjson call, which costs a hit more than its Redis commands when
  -- hits come one at a time (bench/results/profile-notes.md, session 9).
  local names = namesJson == '[]' and {} or cjson.decode(namesJson)
  local declared = {}
  for i, name in ipairs(names) do declared[name] = KEYS[first + i - 1] end
  return verKey, names, declared
end

-- The entry format this engine writes (fill.lua's `fl`) and knows how to judge. A release that
-- adds an entry field restricting who may be served raises it, and writes its entries at the new
-- level; the releases before it, from the one that brought `fl` on, then read those entries as
-- invalid ('format') instead of serving them without the rule they cannot apply. Entries
-- without `fl` (written before it existed) are level 0. During a deploy the older release
-- refills such a key at its own level, which the newer one reads by its rules for entries
-- without the field (as every release reads entries written before a field existed).
local FORMAT_LEVEL = 1
local FORMAT_TEXT = '1'
-- A level is the decimal digits fill.lua writes; anything else (not a number, or one
-- tonumber reads but is no level: "nan", which compares false with every level, "-1", "0x2")
-- is a level this engine cannot read, so above.
local function aboveFormat(fl)
  if not fl or fl == '' or fl == FORMAT_TEXT then return false end
  return not string.find(fl, '^%d+$') or tonumber(fl) > FORMAT_LEVEL
end

-- Why a stored entry (its `ver` and `tg` fields) may not be served, or false when it may:
-- 'format' (a later engine's entry, see FORMAT_LEVEL), 'version', 'tag', or 'need' plus the entry's tag names when it has a tag not in `declared`
-- (fail closed: an undeclared counter cannot be read). `readCounter(key)` reads a tag
-- counter: hit.lua GETs it (a missing one matches nothing), acquire.lua recreates a missing
-- one at the current time. `order` is the entry's `tk` field (its tag names as fill.lua was
-- given them, a JSON array; false or "" for entries without it): `need` lists the names in that
-- order, so a reader declaring them back as taught sends that very string and takes hit.lua's
-- short path next time. `own` is how many of `names` (the declared names, in order) are the
-- caller's own tags: each must be one the entry was filled under, else 'tag' (an entry filled
-- by code that did not know the tag, e.g. before a deploy added it, would otherwise survive
-- every bump of it). Learned names after them may be stale (another isolate refilled the entry
-- with other `tagsOf` tags): those only have to be checked when the entry has them.
local function entryReason(verKey, ver, tg, declared, readCounter, order, names, own, versioned, format)
  -- An entry of a later engine's format may carry a rule this one does not know (FORMAT_LEVEL):
  -- not served, as an undeclared tag is not (fail closed).
  if aboveFormat(format) then return 'format' end
  -- An entry filled under a version key (`vk`, fill.lua) is not served to a reader that
  -- declares none: it cannot check the version, and a bump would not reach it (fail closed,
  -- as for tags). Entries filled before `vk` existed have none and are read as before.
  if not verKey and versioned == '1' then return 'version' end
  if verKey then
    local current = redis.call('GET', verKey)
    if ver == '' then return 'version' end
    -- "" (a lease holder's load in flight, version unknown) validates nothing, like a missing
    -- version key next to a versioned entry (evicted: trust nothing). Except an entry at
    -- version 0 ("nothing committed yet"): its fill does not create the version key, so that
    -- probing unknown ids leaves no key without a TTL, and a refresh lease on it then marks
    -- the key "" (takeLease): the entry stays valid for the readers in the meantime.
    if not current or current == '' then
      if ver ~= '0' then return 'version' end
    elseif tonumber(ver) < tonumber(current) then
      return 'version'
    end
  end
  local ownCount = tonumber(own) or 0
  if not tg or tg == '' then
    if ownCount > 0 then return 'tag' end
    return false
  end
  local tags = cjson.decode(tg)
  for i = 1, ownCount do
    if tags[names[i]] == nil then return 'tag' end
  end
  local all, missing = {}, false
  for name, _ in pairs(tags) do
    all[#all + 1] = name
    if not declared[name] then missing = true end
  end
  if missing then
    if order and order ~= '' then all = cjson.decode(order) end
    return 'need', all
  end
  for name, seen in pairs(tags) do
    if readCounter(declared[name]) ~= seen then return 'tag' end
  end
  return false
end

-- Tells a waiter what the lease holder announced (src/cache/read/wait.ts): eta, the ms until its
-- load should be done (negative once overdue), and est, the load time it announced; nothing
-- when the lease is gone or announced none. The lease holds "<token>.<ms>.<granted at ms>".
local function announced(out, lease, now)
  local held = redis.call('GET', lease)
  if not held then return end
  local ms, at = string.match(held, '%.(%d+)%.(%d+)$')
  if not ms or tonumber(ms) <= 0 then return end
  out.eta = tonumber(at) + tonumber(ms) - now
  out.est = tonumber(ms)
end

-- A fill id as a reply carries it (spliced into the JSON as is): letters and digits, as the
-- client draws them (src/cache/token.ts); anything else (absent, hand-edited) is no id.
local function fillId(id)
  if id and string.find(id, '^%w+$') then return id end
  return nil
end

-- The reply's entry fields (what `fromEntry` in src/cache/read/reply.ts reads, and the fill's
-- `id`) but the value
-- (see encodeReply), when there is a value; `reason` 'expired' marks a value kept only for
-- fail-safe. hit.lua writes a fresh HIT's reply out by hand (hitReply): a field added here must
-- be added there (test/node/cache/reply.test.ts compares the two).
local function putEntry(out, value, ver, fu, su, lt, ct, reason, id)
  if not value then return end
  out.ver = ver
  -- The fill's identity (fill.lua's `id`): what a late reader's check compares (see hit.lua).
  out.id = fillId(id)
  out.fu = fu
  out.su = su
  out.lt = tonumber(lt)
  out.ct = tonumber(ct)
  out.fs = (reason == 'expired')
end

-- The reply as JSON with the entry's value spliced in as stored (it is JSON already, written by
-- the client's JSON.stringify): the client parses the reply once, where cjson would have sent
-- the value as a JSON string inside JSON, escaped, to be parsed a second time.
local function encodeReply(out, value)
  local json = cjson.encode(out)
  if not value then return json end
  return string.sub(json, 1, -2) .. ',"v":' .. value .. '}'
end

-- A counter created by a read or a fill, before any entry is stored under it, lives this long
-- (ms); the fill that stores an entry under it makes it permanent (PERSIST, fill.lua), and a
-- bump (a plain SET) does too. Tags come from clients (a list's `category:<id>` for an id
-- that names nothing): a permanent counter per tag a lease captured let anyone fill Redis
-- with keys that never expire, which volatile-* eviction cannot take. Longer than any load
-- (a fill whose counter expired meanwhile is refused, and the next load lands).
local PROVISIONAL_COUNTER_MS = 600000

-- A tag counter as a granted lease captures it. Counters start at the current time, not 0, so
-- a counter lost to eviction comes back with a value no entry was computed under: its entries
-- turn invalid instead of valid again.
local function capturedCounter(key, nowText)
  local c = redis.call('GET', key)
  if not c then
    c = nowText
    redis.call('SET', key, c, 'PX', PROVISIONAL_COUNTER_MS)
  end
  return c
end

-- Takes the single-flight lease for a load (acquire.lua; fill.lua again for a reload): true
-- when it was free. A load under a version key that does not exist yet marks it "present,
-- version unknown" (""), so the fill can tell "never set" from "evicted during the load" (then
-- it may have taken a newer version with it) and refuse the latter; the mark lives as long as
-- the lease. {p}:tb, the time of the prefix's latest tag bump (fill.lua): missing means never
-- bumped, or evicted; just below now is true of every bump a load starting now must not miss
-- (the blind spot is a bump earlier in this very millisecond whose record was evicted).
local function takeLease(lease, leaseValue, leaseTtl, verKey, tagClock, now)
  if not redis.call('SET', lease, leaseValue, 'NX', 'PX', leaseTtl) then return false end
  if verKey and redis.call('EXISTS', verKey) == 0 then
    redis.call('SET', verKey, '', 'PX', leaseTtl)
  end
  redis.call('SET', tagClock, string.format('%d', now - 1), 'NX')
  return true
end

-- What a granted lease answers: tok (the lease value, which the fill compares whole), tg (the
-- counters of the first nCapture declared names, the caller's own tags, in order) and, with a
-- version key, cv: the version the key had (0 = never written, or "" = unknown), under which a
-- negative entry ("not found") is stored, so any later version advance invalidates it.
local function grantReply(out, leaseValue, verKey, names, declared, nCapture, nowText)
  out.tok = leaseValue
  local snap = {}
  for i = 1, nCapture do
    snap[#snap + 1] = capturedCounter(declared[names[i]], nowText)
  end
  out.tg = snap
  if verKey then
    -- As text: cjson encodes numbers with 14 significant digits, and a version of 15 digits
    -- or more (a microsecond timestamp) came back rounded (exactCv in src/cache/read/reply.ts).
    local cv = redis.call('GET', verKey)
    out.cv = (cv and cv ~= '') and cv or '0'
  end
end
