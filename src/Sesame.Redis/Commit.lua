-- Sesame: commits one request's change to one session (after Layout.lua and Patch.lua).
-- KEYS: the session, its shard's expiry set, id set and bound hash.
-- ARGV: prefix, id, mustExist ('1'/'0'), idle timeout in ms (negative: never expire), the size limit (the data
-- tree's, and the facts' when they grow), the refresh interval in ms, then the change (Patch.lua). A commit sets the
-- session's last-seen time; it slides the expiry only when that is due (slideDue in Layout.lua), as a load does: the
-- expiry set's ZADD and the PEXPIRE are a good part of a small commit's time, and a burst of requests then makes one
-- expiry write rather than one each. The time left is read from the deadline the hash's '#x' holds (leftOf), or from
-- the key's TTL when it holds none.
-- Replies: {'ok', ended...} | {'gone', ended...} | {'large', size} | {'moving'} | {'stale', mark} | a refusal
-- of Patch.lua, where ended is the {reason, owner} of an earlier session under this id that Redis ended and
-- nobody had reported (see ended in Layout.lua), or nothing. Nothing is written unless the reply is 'ok' or 'gone'.
local key, id = KEYS[1], ARGV[2]
local mustExist = ARGV[3] == '1'
local ttl = tonumber(ARGV[4])
local maxSize = tonumber(ARGV[5])
local interval = tonumber(ARGV[6])

local function main()
  local now = nowMs()
  -- One read for a stored session; its type is asked only when that read finds nothing (or not a hash).
  local meta = readMeta(key, '#v', '#s', '#m', '#x')
  local creating = not meta
  if creating then
    if mustExist then
      local report = ended(id, now)
      if report then return { 'gone', report[1], report[2] } end
      return { 'gone' }
    end
    openNew()
  else
    checkMark(meta[3], now)
    openStored(key, meta[1], meta[2])
  end
  applyChange(7)
  checkRoots()
  if total > maxSize then return { 'large', total } end
  local facts = factsOver(maxSize)
  if facts then return { 'large', facts } end
  put('#s', string.format('%d', total))
  put('#t', string.format('%d', now))
  local reply = { 'ok' }
  if creating then
    local report = ended(id, now)
    if report then reply = { 'ok', report[1], report[2] } end
    redis.call('ZADD', KEYS[3], '0', id)
  end
  -- A new key has no TTL yet; a session that never expires slides only off a TTL an earlier timeout gave it. A timeout
  -- other than the one the expiry last slid to ('#x') slides at once, so that the first commit under a shorter or a
  -- longer timeout applies it.
  local timeout, deadline
  if not creating then timeout, deadline = expiryOf(meta[4]) end
  local due = creating or timeout ~= ttl
  if not due then
    local left = leftOf(deadline, now) or redis.call('PTTL', key)
    if ttl < 0 then due = left >= 0 else due = slideDue(left, ttl, interval) end
  end
  -- The timeout a slide sets, which a load compares with its own to know whether it must slide (see Load.lua), and the
  -- deadline it sets (expiryField).
  if due then put('#x', expiryField(ttl, now)) end
  flush(key)
  if due then expire(key, id, ttl, now) end
  return reply
end

return run(main)
