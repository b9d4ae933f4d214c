-- `SET KEYS[1] ARGV[2] IFEQ ARGV[1] [PX ARGV[3]]`, for servers without `IFEQ` (Redis before
-- 8.4, Valkey before 8.1): the completion of a natively claimed record, written only while
-- the key still holds exactly the record the claim wrote. 1 when it wrote; 0 when the key
-- holds anything else (another record, another type, nothing), and nothing was written.
-- No header is parsed and no clock read: the caller built both records.
if redis.pcall('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[3] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
return 1
