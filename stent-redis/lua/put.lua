-- put: create or replace a completed record.
-- ARGV: value, ttl_ms ('' = never expires), grace_ms, then field/value pairs of metadata.
-- Reply: {'stored'} | {'wrongtype', type}
local n, foreign = read('HLEN', key)
if not n then
  return foreign
end
if n > 0 then
  redis.call('DEL', key)
end
local now = now_ms()
local fields = {
  'state', 'completed',
  'value', ARGV[1],
  'attempt', '1',
  'created_ms', int(now),
  'completed_ms', int(now),
}
for i = 4, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
local expires
if ARGV[2] ~= '' then
  expires = now + tonumber(ARGV[2])
  fields[#fields + 1] = 'expires_ms'
  fields[#fields + 1] = int(expires)
  -- When Redis deletes it: with PTTL, a read learns the server's time from the key alone.
  fields[#fields + 1] = 'purge_ms'
  fields[#fields + 1] = int(purge_at(expires, ARGV[3]))
end
redis.call('HSET', key, unpack(fields))
if expires then
  redis.call('PEXPIREAT', key, int(purge_at(expires, ARGV[3])))
end
return {'stored'}
