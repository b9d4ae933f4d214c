-- get: the record as HGETALL pairs, or 'none' when absent or (unless ARGV[1] == '1') expired.
-- Reply: {'none'} | {'wrongtype', type} | {'record', now, field, value, ...}
local f, foreign = fields('expires_ms')
if not f then
  return foreign
end
local all = redis.call('HGETALL', key)
if #all == 0 then
  return {'none'}
end
local now = now_ms()
if ARGV[1] ~= '1' and expired(f[1], now) then
  return {'none'}
end
return {'record', int(now), unpack(all)}
