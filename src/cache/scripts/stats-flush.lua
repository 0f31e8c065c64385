-- stats-flush: adds an isolate's pending counters. KEYS[1] stats hash
-- ARGV[1] flat "field,delta,field,delta".
for field, delta in string.gmatch(ARGV[1], '([^,]+),([^,]+)') do
  redis.call('HINCRBY', KEYS[1], field, delta)
end
return 1
