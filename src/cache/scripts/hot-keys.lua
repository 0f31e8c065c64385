#!lua flags=no-writes,allow-key-locking
-- hot-keys: top N keys by decayed frequency over the sampled windows (LFU with decay), merged
-- over every shard in one request. The client names the window zsets (window ids from the
-- Redis clock it learned from earlier replies), so every key is declared.
-- KEYS: window zsets (every shard of every window kept)   ARGV[1] N
-- ARGV[2..] weight of KEYS[i - 1] (decay^age of its window). Returns flat key, score, ...
local args = { 'ZUNION', #KEYS }
for _, k in ipairs(KEYS) do args[#args + 1] = k end
args[#args + 1] = 'WEIGHTS'
for i = 2, #KEYS + 1 do args[#args + 1] = ARGV[i] end
args[#args + 1] = 'WITHSCORES'
local all = redis.call(unpack(args))
-- ZUNION sorts ascending by score: take the tail.
local out = {}
local pairsCount = #all / 2
for i = pairsCount, math.max(1, pairsCount - tonumber(ARGV[1]) + 1), -1 do
  out[#out + 1] = all[2 * i - 1]
  out[#out + 1] = all[2 * i]
end
return out
