-- put: create or replace a completed record.
-- ARGV: value, ttl_ms ('' = never expires), grace_ms, then field/value pairs of metadata.
-- Reply: {'stored'} | {'wrongtype', type}
local foreign = foreign_type()
if foreign then
  return foreign
end
local now = now_ms()
redis.call('DEL', key)
redis.call('HSET', key,
  'state', 'completed',
  'value', ARGV[1],
  'attempt', '1',
  'created_ms', int(now),
  'completed_ms', int(now),
  unpack(ARGV, 4))
set_expiry(now, ARGV[2], ARGV[3])
return {'stored'}
