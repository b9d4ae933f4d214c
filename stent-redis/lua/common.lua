-- Prepended to every stent script. KEYS[1] is the record's hash; every script touches
-- only that key, so each one is atomic and cluster-safe. Time always comes from the
-- server's clock, in milliseconds since the Unix epoch.
local key = KEYS[1]

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
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

-- Runs a read of the record. When the key holds something other than a hash, returns nil
-- and a reply naming that type instead: a record is never read as, or written over, a
-- value someone else put there.
local function read(...)
  local r = redis.pcall(...)
  if type(r) == 'table' and r['err'] then
    local t = redis.call('TYPE', key)['ok']
    if t == 'hash' then
      error(r['err'])
    end
    return nil, {'wrongtype', t}
  end
  return r
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
