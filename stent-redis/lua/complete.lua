-- complete: store the value of a record the token owns; a stale token writes nothing.
-- ARGV: token, value, ttl_ms ('' = never expires), grace_ms.
-- Reply: {'completed'} | {'lost'} | {'wrongtype', type} | {'corrupt', what}
-- Half of every first call, so it builds no table of the record: a completed record keeps
-- the attempt, the creation time and the metadata (an in-progress record holds no value:
-- what follows its header is the metadata).
local r, state, token, attempt, created, _, _, _, _, meta_len, at = read_record()
if r == false then
  return state -- the reply naming the type the key holds
end
if not r then
  return {'lost'}
end
if not state then
  return not_a_record(r)
end
if state ~= 'in_progress' or token ~= ARGV[1] then
  return {'lost'}
end
local now = now_text()
local expires, purge = expiry(now, ARGV[3], ARGV[4])
write_completed(attempt, created, now, expires, purge, meta_len, string.sub(r, at), ARGV[2])
return {'completed'}
