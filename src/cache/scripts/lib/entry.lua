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

-- Why a stored entry (its `ver` and `tg` fields) may not be served, or false when it may:
-- 'version', 'tag', or 'need' plus the entry's tag names when it has a tag not in `declared`
-- (fail closed: an undeclared counter cannot be read). `readCounter(key)` reads a tag
-- counter: hit.lua GETs it (a missing one matches nothing), acquire.lua recreates a missing
-- one at the current time. `order` is the entry's `tk` field (its tag names as fill.lua was
-- given them, a JSON array; false or "" for entries without it): `need` lists the names in that
-- order, so a reader declaring them back as taught sends that very string and takes hit.lua's
-- short path next time.
local function entryReason(verKey, ver, tg, declared, readCounter, order)
  if verKey then
    local current = redis.call('GET', verKey)
    -- "" (a first load in flight, version unknown) validates nothing.
    if ver == '' or current == '' then return 'version' end
    if not current then
      -- A missing version key next to a versioned entry means it was evicted: trust nothing.
      -- Except a negative entry at version 0 ("nothing committed yet"): its fill does not
      -- create the version key, so that probing unknown ids leaves no key without a TTL.
      if ver ~= '0' then return 'version' end
    elseif tonumber(ver) < tonumber(current) then
      return 'version'
    end
  end
  if not tg or tg == '' then return false end
  local tags = cjson.decode(tg)
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
