#!lua flags=no-writes,allow-key-locking
-- hot-keys: top N keys by decayed frequency over the sampled windows (LFU with decay), merged
-- over every shard in one request. The client names the window zsets (window ids from the
-- Redis clock it learned from earlier replies), so every key is declared.
-- KEYS: window zsets (every shard of every window kept)   ARGV[1] N
-- ARGV[2 .. #KEYS + 1] weight of each key (decay^age of its window), in order
-- ARGV[#KEYS + 2 ..] members whose scores are wanted whatever their rank: the caller's
--   unflushed samples, which it adds itself (a member outside the top N plus its pending
--   samples may belong in the top N).
-- Returns { flat top-N key, score, ...; flat key, score of the named members found }.
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
local named = {}
if #ARGV > #KEYS + 1 then
  local wanted = {}
  for i = #KEYS + 2, #ARGV do wanted[ARGV[i]] = true end
  for i = 1, pairsCount do
    if wanted[all[2 * i - 1]] then
      named[#named + 1] = all[2 * i - 1]
      named[#named + 1] = all[2 * i]
    end
  end
end
return { out, named }
