-- complete: store the value of a record the token owns; a stale token writes nothing.
-- ARGV: token, value, ttl_ms ('' = never expires), grace_ms.
-- Reply: {'completed'} | {'lost'} | {'wrongtype', type}
local f, foreign = read('HMGET', key, 'state', 'lease_token')
if not f then
  return foreign
end
if f[1] ~= 'in_progress' or f[2] ~= ARGV[1] then
  return {'lost'}
end
local now = now_ms()
-- The lease fields stay: a completed record's are never read (every script checks the
-- state first, and the client drops them), and each call in a script costs the server.
if ARGV[3] == '' then
  redis.call('HSET', key, 'state', 'completed', 'value', ARGV[2], 'completed_ms', int(now))
else
  local expires = now + tonumber(ARGV[3])
  local purge = purge_at(expires, ARGV[4])
  -- purge_ms: when Redis deletes it; with PTTL, a read learns the server's time from the key.
  redis.call('HSET', key, 'state', 'completed', 'value', ARGV[2], 'completed_ms', int(now),
    'expires_ms', int(expires), 'purge_ms', int(purge))
  redis.call('PEXPIREAT', key, int(purge))
end
return {'completed'}
