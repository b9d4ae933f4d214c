-- release: delete the in-progress record ARGV[1] owns, and nothing else.
-- ARGV: owner prefix. Reply: 1 | what the key holds instead (nil: nothing).
local r = redis.call('GET', key)
if owned(r) then
  return redis.call('DEL', key)
end
return r
