-- claim: take an absent, expired or lapsed key with the caller's token; otherwise report it.
-- ARGV: token, lease_ms, then field/value pairs of the record's metadata.
-- Reply: {'acquired', attempt, lease_expires_ms} | {'in_flight', field, value, ...}
--      | {'completed', field, value, ...} | {'corrupt', field} | {'wrongtype', type}
local all, foreign = read('HGETALL', key)
if not all then
  return foreign
end
local now = now_ms()
local attempt = 1
if #all > 0 then
  local h = {}
  for i = 1, #all, 2 do
    h[all[i]] = all[i + 1]
  end
  if not expired(h['expires_ms'], now) then
    if h['state'] == 'completed' then
      return {'completed', unpack(all)}
    end
    if h['state'] ~= 'in_progress' then
      return {'corrupt', 'state'}
    end
    local lease = tonumber(h['lease_expires_ms'])
    if lease and lease > now then
      return {'in_flight', unpack(all)}
    end
    attempt = (tonumber(h['attempt']) or 1) + 1
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
