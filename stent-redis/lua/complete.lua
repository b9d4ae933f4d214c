-- complete: store the value of a record the token owns; a stale token writes nothing.
-- ARGV: token, value, ttl_ms ('' = never expires), grace_ms.
-- Reply: {'completed'} | {'lost'} | {'wrongtype', type} | {'corrupt', what}
local rec, foreign = load()
if rec == false then
  return foreign
end
if not rec or rec.state ~= 'in_progress' or rec.token ~= ARGV[1] then
  return {'lost'}
end
settle(rec)
write_completed(rec, ARGV[2], now_ms(), ARGV[3], ARGV[4])
return {'completed'}
