-- delete: remove the record whatever its state; with ARGV[1] == '1', only if it expired
-- (purge). Reply: {'deleted'} | {'absent'} | {'wrongtype', type}
local f, foreign = read('HMGET', key, 'expires_ms')
if not f then
  return foreign
end
if ARGV[1] == '1' and not expired(f[1], now_ms()) then
  return {'absent'}
end
if redis.call('DEL', key) == 1 then
  return {'deleted'}
end
return {'absent'}
