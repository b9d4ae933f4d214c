-- renew: move the lease of a record the token owns.
-- ARGV: token, lease_ms. Reply: {'renewed', lease_expires_ms} | {'lost'} | {'wrongtype', type}
local f, foreign = read('HMGET', key, 'state', 'lease_token')
if not f then
  return foreign
end
if f[1] ~= 'in_progress' or f[2] ~= ARGV[1] then
  return {'lost'}
end
local until_ms = now_ms() + tonumber(ARGV[2])
redis.call('HSET', key, 'lease_expires_ms', int(until_ms))
return {'renewed', int(until_ms)}
