-- complete: store the value of the record ARGV[1] owns; anyone else's is left as it is
-- (fencing). Half of every first call: one GET, one TIME, one SET.
-- ARGV: owner prefix, value, ttl_ms ('' = never expires), purge offset (ms after expiry).
-- Reply: 1 | what the key holds instead (nil: nothing).
local r = redis.call('GET', key)
local attempt, created, meta = owned(r)
if not attempt then
  return r
end
local t = redis.call('TIME')
-- Made from TIME's two strings: no number is formatted on this path without a ttl.
local now = t[1] .. string.sub('00000' .. t[2], -6, -4)
write_completed(now, 'stent1|completed||' .. attempt .. '|' .. created .. '||' .. now .. '|',
  string.sub(r, meta), ARGV[2], ARGV[3], ARGV[4])
return 1
