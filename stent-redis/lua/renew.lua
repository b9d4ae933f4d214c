-- renew: move the lease of a record the token owns.
-- ARGV: token, lease_ms. Reply: {'renewed', lease_expires_ms} | {'lost'} | {'wrongtype', type}
--     | {'corrupt', what}
local rec, foreign = load()
if rec == false then
  return foreign
end
if not rec or rec.state ~= 'in_progress' or rec.token ~= ARGV[1] then
  return {'lost'}
end
settle(rec)
rec.lease = int(now_ms() + tonumber(ARGV[2]))
redis.call('SET', key, encode(rec), 'KEEPTTL')
return {'renewed', rec.lease}
