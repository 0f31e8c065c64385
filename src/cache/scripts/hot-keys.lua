-- hot-keys: top N keys by decayed frequency over the sampled windows (LFU with decay).
-- Window w ago weighs decay^w. ARGV[1] prefix  ARGV[2] window ms  ARGV[3] windows
-- ARGV[4] decay  ARGV[5] N. Returns a flat list key, score, key, score...
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local windowMs, windows = tonumber(ARGV[2]), tonumber(ARGV[3])
local current = math.floor(now / windowMs)
local keys, weights = {}, {}
for age = 0, windows - 1 do
  keys[#keys + 1] = ARGV[1] .. ':hot:' .. (current - age)
  weights[#weights + 1] = tostring(tonumber(ARGV[4]) ^ age)
end
local args = { 'ZUNION', #keys }
for _, k in ipairs(keys) do args[#args + 1] = k end
args[#args + 1] = 'WEIGHTS'
for _, w in ipairs(weights) do args[#args + 1] = w end
args[#args + 1] = 'WITHSCORES'
local all = redis.call(unpack(args))
-- ZUNION sorts ascending by score: take the tail.
local out = {}
local pairsCount = #all / 2
for i = pairsCount, math.max(1, pairsCount - tonumber(ARGV[5]) + 1), -1 do
  out[#out + 1] = all[2 * i - 1]
  out[#out + 1] = all[2 * i]
end
return out
