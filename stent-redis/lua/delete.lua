-- delete: remove the record whatever its state (a broken one too); with ARGV[1] == '1',
-- only if it expired (purge). A record removed by a delete (not a purge) is announced on
-- the store's channel ARGV[2], the message being its key, so that every process's local
-- tier drops it. Reply: 1 deleted | 0 not | -1 a string that is not a record.
local r = redis.call('GET', key)
if not r then
  return 0
end
if string.sub(r, 1, 7) ~= 'stent1|' then
  return -1
end
if ARGV[1] == '1' then
  local expires = string.match(r, '^stent1|[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|(%d+)|')
  if not expires or tonumber(expires) > now_ms() then
    return 0
  end
  return redis.call('DEL', key)
end
redis.call('DEL', key)
redis.call('PUBLISH', ARGV[2], key)
return 1
