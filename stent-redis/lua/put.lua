-- put: create or replace a completed record (a broken one too: the cache heals itself).
-- A record replaced (not a key created) is announced on the store's channel, the message
-- being its key, so that every process's local tier drops the old value.
-- ARGV: value, ttl_ms ('' = never expires), purge offset, metadata block, channel.
-- Reply: 1 | 0 when the key holds a string that is not a record (never written over).
local mark = redis.call('GETRANGE', key, 0, 6) -- only the mark: an old value may be large
if mark ~= 'stent1|' and (mark ~= '' or redis.call('EXISTS', key) == 1) then
  return 0
end
local t = redis.call('TIME')
local now = t[1] .. string.sub('00000' .. t[2], -6, -4)
write_completed(now, 'stent1|completed||1|' .. now .. '||' .. now .. '|',
  #ARGV[4] .. '|' .. ARGV[4], ARGV[1], ARGV[2], ARGV[3])
if mark == 'stent1|' then
  redis.call('PUBLISH', ARGV[5], key)
end
return 1
