-- claim, the slow path: the client first tries SET NX GET, which settles an absent key
-- (acquired) and a completed record Redis keeps only while it is live (replay). Everything
-- else comes here: an in-progress record (in flight, or a lapsed lease to take over), a
-- completed record that may have expired (with a grace), an absent key (the record went
-- away in between).
-- ARGV: token, lease_ms, metadata block, horizon_ms.
-- Reply: {'acquired', attempt, lease_expires_ms} | {'in_flight', record, created_ms, lease_expires_ms}
--      | {'completed', record} | {'corrupt', what} | {'wrongtype', type}
local rec, foreign = load(true)
if rec == false then
  return foreign
end
local now = now_ms()
local attempt = 1
if rec and not expired(rec.expires, now) then
  if rec.state == 'completed' then
    return {'completed', rec.raw}
  end
  if rec.state ~= 'in_progress' then
    return {'corrupt', 'state'}
  end
  settle(rec)
  local lease = tonumber(rec.lease)
  if lease and lease > now then
    return {'in_flight', rec.raw, rec.created, rec.lease}
  end
  attempt = (tonumber(rec.attempt) or 1) + 1
end
local until_ms = now + tonumber(ARGV[2])
local new = {
  state = 'in_progress', token = ARGV[1], attempt = int(attempt), created = int(now),
  lease = int(until_ms), completed = '', expires = '', purge = '', lease_ms = '',
  horizon = '', meta = ARGV[3],
}
redis.call('SET', key, encode(new), 'PX', ARGV[4])
return {'acquired', int(attempt), int(until_ms)}
