-- release: delete the in-progress record the token owns, and nothing else.
-- ARGV: token. Reply: {'released'} | {'kept'} | {'wrongtype', type} | {'corrupt', what}
local rec, foreign = load()
if rec == false then
  return foreign
end
if rec and rec.state == 'in_progress' and rec.token == ARGV[1] then
  redis.call('DEL', key)
  return {'released'}
end
return {'kept'}
