-- Sesame: reads one session and slides its idle expiry, in one round trip (after Layout.lua).
-- KEYS: the session, its shard's expiry set, id set and bound hash.
-- ARGV: prefix, id, idle timeout in ms (negative: never expire), refresh interval in ms: the expiry is left
-- alone while less than this much of it has run down since the last refresh (for a session that never
-- expires: since it was last seen), so a burst of loads makes one write rather than one each. A TTL longer
-- than the timeout is cut to it. A refresh also sets the session's last-seen time.
-- Replies: {'hash', {field, value, ...}} | {'none'} | {'none', reason, owner} for a session Redis ended that
-- nobody had reported (see ended in Layout.lua) | {type} for a key of another type.
local key, id = KEYS[1], ARGV[2]
local ttl = tonumber(ARGV[3])
local interval = tonumber(ARGV[4])

local function main()
  -- A hash is never empty, so an empty reply is a missing key; its type is asked only then, or for an error.
  local fields = redis.pcall('HGETALL', key)
  if fields.err or #fields == 0 then
    local kind = redis.call('TYPE', key)['ok']
    if kind == 'none' then
      local report = ended(id, nowMs())
      if report then return { 'none', report[1], report[2] } end
      return { 'none' }
    end
    if kind ~= 'hash' then return { kind } end
  end
  local left = redis.call('PTTL', key)
  local refresh
  if ttl < 0 then
    local seen = tonumber(redis.call('HGET', key, '#t'))
    refresh = left >= 0 or not seen or nowMs() - seen >= interval
  else
    refresh = left < 0 or left > ttl or ttl - left >= interval
  end
  if refresh then
    local now = nowMs()
    redis.call('HSET', key, '#t', string.format('%d', now))
    expire(key, id, ttl, now)
  end
  return { 'hash', fields }
end

return run(main)
