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
local until_ms = int(now_ms() + tonumber(ARGV[2]))
redis.call('SET', key, in_progress(rec.token, rec.attempt, rec.created, until_ms, rec.meta))
return {'renewed', until_ms}
