-- stats-read: the shared counters. KEYS[1] stats hash.
return redis.call('HGETALL', KEYS[1])
