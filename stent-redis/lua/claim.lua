-- claim, for what SET … NX GET cannot settle: an in-progress record (in flight, or a
-- lapsed lease to take over, attempt + 1), a completed record kept past its expiry by a
-- grace (taken afresh), an absent key (gone in between).
-- ARGV: owner prefix (`stent1|in_progress|<token>|`), the claim record after its attempt,
-- lease_ms + horizon_ms, lease_ms.
-- Reply: {attempt, lease_expires_ms} when taken | {record, PEXPIRETIME} when not.
local r = redis.call('GET', key)
local now = now_ms()
local attempt = 1
if r then
  local state, n, lease, expires, horizon = string.match(r,
    '^stent1|([^|]*)|[^|]*|(%d+)|%d*|(%d*)|[^|]*|(%d*)|[^|]*|[^|]*|(%d*)|%d+|')
  if state == 'in_progress' then
    local at = redis.call('PEXPIRETIME', key)
    -- Claimed natively: the lease ends horizon_ms before the key expires.
    local until_ms = tonumber(lease) or (horizon ~= '' and at - horizon)
    if not until_ms or until_ms > now then
      return {r, at}
    end
    attempt = n + 1
  elseif state ~= 'completed' or expires == '' or tonumber(expires) > now then
    return {r, -2}
  end
end
-- PXAT rather than PX, so that the claim time read back from the expiry is exactly `now`.
redis.call('SET', key, ARGV[1] .. int(attempt) .. ARGV[2], 'PXAT', int(now + ARGV[3]))
return {attempt, now + ARGV[4]}
