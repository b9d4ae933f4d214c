-- Prepended to every stent script. KEYS[1] is the record's key; every script touches
-- only that key, so each one is atomic and cluster-safe. Time always comes from the
-- server's clock, in milliseconds since the Unix epoch. The layout of a record (one
-- string: a header, then metadata and value) is described in src/layout.rs.
local key = KEYS[1]
local MARK = 'stent1'
-- The header: the mark, then state, lease_token, attempt, created_ms, lease_expires_ms,
-- completed_ms, expires_ms, purge_ms, two reserved fields, meta_len, each ended by '|';
-- the last capture is where the metadata starts.
local HEADER = '^stent1|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|'
  .. '[^|]*|[^|]*|(%d+)|()'

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The server's time in milliseconds as a decimal string, made from TIME's two strings:
-- turning a Lua number into a string costs the server more than the rest of a completion.
local function now_text()
  local t = redis.call('TIME')
  return t[1] .. string.sub('00000' .. t[2], -6, -4)
end

-- Integers as decimal strings: Lua numbers are doubles, and their default formatting
-- would turn large ones into exponent notation.
local function int(n)
  return string.format('%d', n)
end

local function expired(expires_ms, now)
  local e = tonumber(expires_ms)
  return e ~= nil and e <= now
end

-- The reply for a GET of `key` that failed with `err`: the key holds another type (a
-- 'wrongtype' reply naming it); any other failure is raised.
local function not_a_string(err)
  local t = redis.call('TYPE', key)['ok']
  if t == 'string' then
    error(err['err'])
  end
  return {'wrongtype', t}
end

-- The string at `key` and its header's fields (state, lease_token, attempt, created_ms,
-- lease_expires_ms, completed_ms, expires_ms, purge_ms, meta_len, and where the metadata
-- starts), read with one pattern match; no fields when the header does not match (see
-- not_a_record). Nil when the key is absent; false and a 'wrongtype' reply when it holds
-- another type.
local function read_record()
  local r = redis.pcall('GET', key)
  if type(r) == 'table' and r['err'] then
    return false, not_a_string(r)
  end
  if not r then
    return nil
  end
  return r, string.match(r, HEADER)
end

-- The reply for a string whose header does not match: someone else's value without the
-- mark ('wrongtype'), a broken record with it ('corrupt').
local function not_a_record(r)
  if string.sub(r, 1, 7) ~= MARK .. '|' then
    return {'wrongtype', 'string'}
  end
  return {'corrupt', 'header'}
end

-- The string of an in-progress record (no value).
local function in_progress(token, attempt, created, lease, meta)
  return table.concat({MARK, 'in_progress', token, attempt, created, lease, '', '', '', '', '',
    #meta, meta}, '|')
end

-- The record at `key` as a table: nil when the key is absent. When the key holds something
-- that is not a record (another type, a string without the mark) or a broken record,
-- returns false and the reply naming it instead: a record is never read as, or written
-- over, a value someone else put there.
local function load()
  local r, state, token, attempt, created, lease, _, expires, _, meta_len, at = read_record()
  if r == false then
    return false, state -- the reply naming the type the key holds
  end
  if not r then
    return nil
  end
  if not state then
    return false, not_a_record(r)
  end
  return {
    state = state, token = token, attempt = attempt, created = created, lease = lease,
    expires = expires, meta = string.sub(r, at, at + tonumber(meta_len) - 1),
  }
end

-- When Redis deletes a record that expires at `expires`: after the grace, or, without one,
-- the moment it expires (Redis keeps a key through the millisecond of its PEXPIREAT, hence
-- one less). A record whose purge_ms is before its expires_ms is live for as long as it exists.
local function purge_at(expires, grace_ms)
  local grace = tonumber(grace_ms)
  if grace == 0 then
    return expires - 1
  end
  return expires + grace
end

-- expires_ms and purge_ms of a record completed at `now` (text) that lives `ttl_ms`
-- ('' and '' when ttl_ms is '': it never expires).
local function expiry(now, ttl_ms, grace_ms)
  if ttl_ms == '' then
    return '', ''
  end
  local expires = tonumber(now) + tonumber(ttl_ms)
  -- purge_ms: when Redis deletes it; with PTTL, a read learns the server's time from the key.
  return int(expires), int(purge_at(expires, grace_ms))
end

-- Writes a completed record (every argument a string; see src/layout.rs), deleted by Redis
-- at `purge` unless that is ''.
local function write_completed(attempt, created, now, expires, purge, meta_len, meta, value)
  local record = table.concat({MARK, '|completed||', attempt, '|', created, '||', now, '|',
    expires, '|', purge, '|||', meta_len, '|', meta, value})
  if purge == '' then
    redis.call('SET', key, record)
  else
    redis.call('SET', key, record, 'PXAT', purge)
  end
end
