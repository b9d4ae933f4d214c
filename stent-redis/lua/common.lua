-- Prepended to every stent script. KEYS[1] is the record's key; every script touches
-- only that key, so each one is atomic and cluster-safe. Times come from the server's
-- clock, in milliseconds since the Unix epoch; the layout is described in src/layout.rs.
-- A key of another type makes the first command raise WRONGTYPE, which the client turns
-- into an error naming that type: nothing is written.
local key = KEYS[1]

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integers as decimal strings (Lua numbers are doubles: their default formatting would
-- turn large ones into exponent notation).
local function int(n)
  return string.format('%d', n)
end

-- attempt, created_ms (text) and where meta_len starts, when `r` is the in-progress record
-- of the owner whose prefix is ARGV[1] (`stent1|in_progress|<token>|`); nil otherwise (someone
-- else's record, a broken one, or one claimed natively whose key lost its expiry). A record
-- claimed natively has no created_ms: it was claimed at the key's PEXPIRETIME less its
-- lease_ms and horizon_ms.
local function owned(r)
  if not r or string.sub(r, 1, #ARGV[1]) ~= ARGV[1] then
    return nil
  end
  local attempt, created, lease_ms, horizon, meta =
    string.match(r, '^(%d+)|(%d*)|[^|]*|[^|]*|[^|]*|[^|]*|(%d*)|(%d*)|()%d+|', #ARGV[1] + 1)
  if created == '' and lease_ms ~= '' and horizon ~= '' then
    local at = redis.call('PEXPIRETIME', key)
    created = at >= 0 and int(at - lease_ms - horizon) or ''
  end
  if created == '' then
    return nil
  end
  return attempt, created, meta
end

-- Writes the completed record `head` (its header up to completed_ms, completed at `now`),
-- then its expiry fields, then `rest` (meta_len and the metadata) and `value`. With a time to
-- live ttl_ms ('' = never expires), Redis deletes it purge_offset ms after it expires. The
-- record is joined in one expression, so Lua copies a large value once, not once per `..`.
local function write_completed(now, head, rest, value, ttl_ms, purge_offset)
  if ttl_ms == '' then
    return redis.call('SET', key, head .. '||||' .. rest .. value)
  end
  local expires = now + ttl_ms
  local purge = int(expires + purge_offset)
  return redis.call('SET', key, head .. int(expires) .. '|' .. purge .. '|||' .. rest .. value,
    'PXAT', purge)
end
