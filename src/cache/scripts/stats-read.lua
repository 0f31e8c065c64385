#!lua flags=no-writes,allow-key-locking
-- stats-read: the counters of every isolate, summed over the N stats shards in one request.
-- KEYS: the stats shards. Returns a flat list field, total, field, total...
local sums, order = {}, {}
for i = 1, #KEYS do
  local flat = redis.call('HGETALL', KEYS[i])
  for j = 1, #flat, 2 do
    local field = flat[j]
    if sums[field] == nil then
      sums[field] = 0
      order[#order + 1] = field
    end
    sums[field] = sums[field] + tonumber(flat[j + 1])
  end
end
local out = {}
for _, field in ipairs(order) do
  out[#out + 1] = field
  out[#out + 1] = string.format('%d', sums[field])
end
return out
