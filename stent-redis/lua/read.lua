-- read: a record whose times are not all written out yet (claimed natively), with them
-- worked out from the key's expiry, and the server's time.
-- Reply: {'record', record, created_ms, lease_expires_ms, now_ms} | {'absent'}
--      | {'wrongtype', type} | {'corrupt', what}
local rec, foreign = load(true)
if rec == false then
  return foreign
end
if not rec then
  return {'absent'}
end
if rec.state == 'in_progress' then
  settle(rec)
end
return {'record', rec.raw, rec.created, rec.lease, int(now_ms())}
