-- Sesame: reads one session (the hash KEYS[1], laid out as Commit.lua describes) and slides
-- its idle expiry, in one round trip.
-- ARGV: idle timeout in ms (negative: never expire), refresh interval in ms: the TTL is left
-- alone while less than this much of it has run down since the last refresh, so a burst of
-- loads makes one write (PEXPIRE) rather than one each. A TTL longer than the timeout is cut to it.
-- Replies: {'none'} | {'hash', {field, value, ...}} | {type} for a key of another type.
local key = KEYS[1]
local ttl = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local kind = redis.call('TYPE', key)['ok']
if kind ~= 'hash' then return { kind } end
local fields = redis.call('HGETALL', key)
if ttl < 0 then
  redis.call('PERSIST', key)
else
  local left = redis.call('PTTL', key)
  if left < 0 or left > ttl or ttl - left >= interval then redis.call('PEXPIRE', key, ttl) end
end
return { 'hash', fields }
