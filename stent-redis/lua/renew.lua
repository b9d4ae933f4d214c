-- renew: move the lease of the record ARGV[1] owns to lease_ms from now.
-- ARGV: owner prefix, lease_ms, horizon_ms.
-- Reply: the new lease_expires_ms | what the key holds instead (nil: nothing).
local r = redis.call('GET', key)
local attempt, created, meta = owned(r)
if not attempt then
  return r
end
local until_ms = now_ms() + ARGV[2]
redis.call('SET', key, ARGV[1] .. attempt .. '||||||' .. int(until_ms - created) .. '|' .. ARGV[3]
  .. '|' .. string.sub(r, meta), 'PXAT', int(until_ms + ARGV[3]))
return until_ms
