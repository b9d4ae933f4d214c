-- release: delete the in-progress record the token owns, and nothing else.
-- ARGV: token. Reply: {'released'} | {'kept'} | {'wrongtype', type}
local f, foreign = read('HMGET', key, 'state', 'lease_token')
if not f then
  return foreign
end
if f[1] == 'in_progress' and f[2] == ARGV[1] then
  redis.call('DEL', key)
  return {'released'}
end
return {'kept'}
