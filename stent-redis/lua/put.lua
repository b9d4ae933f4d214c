-- put: create or replace a completed record (a broken one too: the cache heals itself).
-- ARGV: value, ttl_ms ('' = never expires), grace_ms, metadata block, its length.
-- Reply: {'stored'} | {'wrongtype', type}
local t = redis.call('TYPE', key)['ok']
if t ~= 'none' then
  if t ~= 'string' then
    return {'wrongtype', t}
  end
  -- Only the mark is read: an old value may be large.
  if redis.call('GETRANGE', key, 0, 6) ~= MARK .. '|' then
    return {'wrongtype', 'string'}
  end
end
local now = now_text()
local expires, purge = expiry(now, ARGV[2], ARGV[3])
write_completed('1', now, now, expires, purge, ARGV[5], ARGV[4], ARGV[1])
return {'stored'}
