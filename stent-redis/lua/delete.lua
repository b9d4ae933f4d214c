-- delete: remove the record whatever its state.
-- ARGV: '1' to delete only when expired (purge). Reply: {'deleted'} | {'absent'} | {'wrongtype', type}
local f, foreign = fields('expires_ms')
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
