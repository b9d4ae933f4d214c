-- claim: take an absent, expired or lapsed key with the caller's token; otherwise say what
-- stands. The caller reads the record itself with the HGETALL it pipelines right before this
-- script: the server builds HGETALL's reply natively, several times cheaper than a script
-- turning the hash into Lua values and back, so a replay costs little more than a read, and
-- a first call reads an empty hash. The times returned with 'completed' let the caller check
-- that the record it read is the one this script found.
-- ARGV: token, lease_ms, then field/value pairs of the record's metadata.
-- Reply: {'acquired', attempt, lease_expires_ms} | {'in_flight'}
--      | {'completed', created_ms, completed_ms} | {'corrupt', field} | {'wrongtype', type}
local f, foreign = read('HMGET', key, 'state', 'expires_ms', 'lease_expires_ms', 'attempt',
  'created_ms', 'completed_ms')
if not f then
  return foreign
end
local state = f[1]
local function completed()
  return {'completed', f[5] or '', f[6] or ''}
end
-- A completed record without an expiry is settled whatever the time: skip the clock.
if state == 'completed' and not f[2] then
  return completed()
end
local now = now_ms()
local attempt = 1
if state or redis.call('EXISTS', key) == 1 then
  if not expired(f[2], now) then
    if state == 'completed' then
      return completed()
    end
    if state ~= 'in_progress' then
      return {'corrupt', 'state'}
    end
    local lease = tonumber(f[3])
    if lease and lease > now then
      return {'in_flight'}
    end
    attempt = (tonumber(f[4]) or 1) + 1
  end
  redis.call('DEL', key)
end
local until_ms = now + tonumber(ARGV[2])
redis.call('HSET', key,
  'state', 'in_progress',
  'lease_token', ARGV[1],
  'lease_expires_ms', int(until_ms),
  'attempt', int(attempt),
  'created_ms', int(now),
  unpack(ARGV, 3))
return {'acquired', int(attempt), int(until_ms)}
