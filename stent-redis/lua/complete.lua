-- complete: store the value of a record the token owns; a stale token writes nothing.
-- ARGV: token, value, ttl_ms ('' = never expires), grace_ms.
-- Reply: {'completed'} | {'lost'} | {'wrongtype', type}
local f, foreign = fields('state', 'lease_token')
if not f then
  return foreign
end
if f[1] ~= 'in_progress' or f[2] ~= ARGV[1] then
  return {'lost'}
end
local now = now_ms()
redis.call('HDEL', key, 'lease_token', 'lease_expires_ms', 'expires_ms')
redis.call('HSET', key, 'state', 'completed', 'value', ARGV[2], 'completed_ms', int(now))
set_expiry(now, ARGV[3], ARGV[4])
return {'completed'}
