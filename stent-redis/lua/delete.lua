-- delete: remove the record whatever its state (a broken one too); with ARGV[1] == '1',
-- only if it expired (purge). Reply: {'deleted'} | {'absent'} | {'wrongtype', type}
local rec, foreign = load()
if rec == false and foreign[1] == 'wrongtype' then
  return foreign
end
if ARGV[1] == '1' and not (rec and expired(rec.expires, now_ms())) then
  return {'absent'}
end
if redis.call('DEL', key) == 1 then
  return {'deleted'}
end
return {'absent'}
