-- claim: take an absent, expired or lapsed key with the caller's token; otherwise report it.
-- ARGV: token, lease_ms, then field/value pairs of the record's metadata.
-- Reply: {'acquired', now, attempt, lease_expires_ms} | {'in_flight', now, field, value, ...}
--      | {'completed', now, field, value, ...} | {'corrupt', field} | {'wrongtype', type}
local f, foreign = fields('state', 'lease_expires_ms', 'attempt', 'expires_ms')
if not f then
  return foreign
end
local state, lease, attempt, expires = f[1], f[2], f[3], f[4]
local now = now_ms()
local next_attempt = 1
if state and not expired(expires, now) then
  if state == 'completed' then
    return {'completed', int(now), unpack(redis.call('HGETALL', key))}
  end
  if state ~= 'in_progress' then
    return {'corrupt', 'state'}
  end
  local lease_ms = tonumber(lease)
  if lease_ms and lease_ms > now then
    return {'in_flight', int(now), unpack(redis.call('HGETALL', key))}
  end
  next_attempt = (tonumber(attempt) or 1) + 1
elseif not state and redis.call('EXISTS', key) == 1 then
  return {'corrupt', 'state'}
end
local until_ms = now + tonumber(ARGV[2])
redis.call('DEL', key)
redis.call('HSET', key,
  'state', 'in_progress',
  'lease_token', ARGV[1],
  'lease_expires_ms', int(until_ms),
  'attempt', int(next_attempt),
  'created_ms', int(now),
  unpack(ARGV, 3))
return {'acquired', int(now), int(next_attempt), int(until_ms)}
