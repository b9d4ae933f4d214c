-- complete: store the value of a record the token owns; a stale token writes nothing.
-- ARGV: token, value, ttl_ms ('' = never expires), grace_ms.
-- Reply: {'completed'} | {'lost'} | {'wrongtype', type} | {'corrupt', what}
-- Half of every first call, so it reads no more than it must: the owner's record starts
-- with its state and token, and a completed record keeps only the attempt, the creation
-- time and the metadata of the rest (an in-progress record holds no value: what follows
-- its header is the metadata).
local r = redis.pcall('GET', key)
if type(r) == 'table' and r['err'] then
  return not_a_string(r)
end
if not r then
  return {'lost'}
end
local head = MARK .. '|in_progress|' .. ARGV[1] .. '|'
if string.sub(r, 1, #head) ~= head then
  if string.sub(r, 1, 7) ~= MARK .. '|' then
    return {'wrongtype', 'string'}
  end
  return {'lost'}
end
-- After the token: attempt, created_ms, then lease_expires_ms, completed_ms, expires_ms,
-- purge_ms and lease_ms (not kept), horizon_ms, meta_len, and where the metadata starts.
local attempt, created, horizon, meta_len, at = string.match(r,
  '^([^|]*)|([^|]*)|[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|([^|]*)|(%d+)|()', #head + 1)
if not attempt then
  return {'corrupt', 'header'}
end
if created == '' then
  -- Claimed by SET NX: created when the key's expiry says (see settle).
  created = int(redis.call('PEXPIRETIME', key) - (tonumber(horizon) or 0))
end
local now = now_text()
local expires, purge = expiry(now, ARGV[3], ARGV[4])
write_completed(attempt, created, now, expires, purge, meta_len, string.sub(r, at), ARGV[2])
return {'completed'}
