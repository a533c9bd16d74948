-- Sesame: the script half of a load (after Layout.lua): slides a session's idle expiry, or reports that it is gone.
-- The store reads the hash by HGETALL, and runs this only when a slide may be due (see ExpiryRefresh.fs and
-- LoadHints.fs): the deadline the hash records (in '#x'), against Redis's clock as the store reads it, shows more
-- than the window run down from the timeout, or is further off than it (for a session that never expires: it has a
-- TTL, or its last-seen time is due); when the hash records no deadline (an earlier Sesame's); and for a session that
-- is not there. This script decides by the key's TTL. The store sends it beside that HGETALL, in the same round
-- trip, when it guesses so beforehand, and after it when the hash shows it. A script that returned the hash would make
-- Redis turn each field into a Lua string and back, several times what HGETALL costs.
-- KEYS: the session, its shard's expiry set, id set and bound hash.
-- ARGV: prefix, id, idle timeout in ms (negative: never expire), refresh interval in ms (the store's load window: its
-- refresh interval capped at a quarter of the timeout): the expiry is left
-- alone while less than this much of it has run down since the last refresh (for a session that never
-- expires: since it was last seen), so a burst of loads makes one write rather than one each. A TTL longer
-- than the timeout is cut to it. A refresh also sets the session's last-seen time. The interval is capped at half the
-- timeout. Then '1' when the store wants Redis's clock in the reply, '0' when not.
-- Replies: {'hash', now, slid} when the key is there: now is Redis's clock (Unix ms) when this call slid the expiry or
-- the store asked for it (0 otherwise), and slid 1 when this call slid the expiry (and so set '#t' to now and '#x' to
-- the timeout and the new deadline), 0 when not | {'none'} | {'none', reason, owner} for a session Redis
-- ended that nobody had reported (see ended in Layout.lua) | {type} for a key of another type, when its expiry would
-- slide (otherwise the HGETALL before this call has failed for it already).
local key, id = KEYS[1], ARGV[2]
local ttl = tonumber(ARGV[3])
local interval = tonumber(ARGV[4])
local wantsClock = ARGV[5] == '1'

local function main()
  -- A hash is never empty, so a key with no TTL to report is a missing key.
  local left = redis.call('PTTL', key)
  if left == -2 then
    local report = ended(id, nowMs())
    if report then return { 'none', report[1], report[2] } end
    return { 'none' }
  end
  local refresh
  if ttl < 0 then
    local seen = redis.pcall('HGET', key, '#t')
    if type(seen) == 'table' and seen.err then return { redis.call('TYPE', key)['ok'] } end
    seen = tonumber(seen)
    refresh = left >= 0 or not seen or nowMs() - seen >= interval
  else
    refresh = slideDue(left, ttl, interval)
  end
  if refresh then
    -- Only a session's hash slides (its HGETALL, just before, failed for any other type).
    local kind = redis.call('TYPE', key)['ok']
    if kind ~= 'hash' then return { kind } end
    local now = nowMs()
    redis.call('HSET', key, '#t', string.format('%d', now), '#x', expiryField(ttl, now))
    expire(key, id, ttl, now)
    return { 'hash', now, 1 }
  end
  if wantsClock then return { 'hash', nowMs(), 0 } end
  return { 'hash', 0, 0 }
end

return run(main)
