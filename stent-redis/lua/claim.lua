-- claim: take an absent key, an expired record or an in-progress one whose lease lapsed
-- (takeover, attempt + 1); answer a live completed record (a replay) or an in-progress one
-- whose lease is live (in flight) as it is.
-- ARGV: token, lease_ms, metadata block.
-- Reply: {'acquired', attempt, lease_expires_ms} | {'in_flight', record} | {'completed', record}
--      | {'corrupt', what} | {'wrongtype', type}
-- Half of every first call and the whole of every replay, so it builds no table of the record.
local r, state, _, attempt, _, lease, _, expires = read_record()
if r == false then
  return state -- the reply naming the type the key holds
end
local now = now_ms()
local next_attempt = 1
if r then
  if not state then
    return not_a_record(r)
  end
  if not expired(expires, now) then
    if state == 'completed' then
      return {'completed', r}
    end
    if state ~= 'in_progress' then
      return {'corrupt', 'state'}
    end
    if (tonumber(lease) or 0) > now then
      return {'in_flight', r}
    end
    next_attempt = (tonumber(attempt) or 1) + 1
  end
end
local until_ms = int(now + tonumber(ARGV[2]))
next_attempt = int(next_attempt)
redis.call('SET', key, in_progress(ARGV[1], next_attempt, int(now), until_ms, ARGV[3]))
return {'acquired', next_attempt, until_ms}
