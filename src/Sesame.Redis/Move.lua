-- Sesame: moves a session to a new id with a change applied, binding it to its user, in one atomic step
-- (after Layout.lua and Patch.lua). The session comes from
--   'k': its key, in this script (both ids in one slot, or not a cluster): the old key is renamed to the new;
--   'c': its fields, copied by the first step of a move across slots (the old key is deleted by the third);
--   'n': nowhere: the session is created.
-- KEYS: the old session (the new one when there is none), the new session, the new id's expiry set, id set
-- and bound hash, the index of the user the change binds the session to (the new session when it binds none),
-- the old id's expiry set, id set and bound hash (the new id's when there is no old id).
-- ARGV: prefix, old id ('' for none), new id, mode, owner afterwards ('' none, '=' the session's own),
-- idle timeout in ms, the size limit (the data tree's, and the facts' when they grow), the user's session limit
-- (0 for none), its policy ('e' end the least recently seen, 'r' refuse), whether an owner must share the new id's
-- tag ('1' on a cluster), the number of copied field pairs n, the 2n copied fields and values, then the change
-- (Patch.lua).
-- Replies: {'ok', then per session ended for the limit: id, n, n facts fields and values} | {'gone', ended...}
-- | {'limit'} | {'exists'} | {'foreign'} | {'large', size} | {'moving'} | {'stale', mark} | a refusal of
-- Patch.lua. Nothing is written unless the reply is 'ok' (or 'gone', which may take an ended session out of
-- the indexes, see ended in Layout.lua).
local fromKey, toKey = KEYS[1], KEYS[2]
local fromId, toId, mode = ARGV[2], ARGV[3], ARGV[4]
local ownerArgument = ARGV[5]
local ttl, maxSize = tonumber(ARGV[6]), tonumber(ARGV[7])
local maxSessions, policy = tonumber(ARGV[8]), ARGV[9]
local strictTags = ARGV[10] == '1'
local copied = tonumber(ARGV[11])

local function main()
  local now = nowMs()
  local oldOwner = false
  if mode == 'k' then
    local meta = readMeta(fromKey, '#v', '#s', '#m', '#u')
    if not meta then
      local report = ended(fromId, now)
      if report then return { 'gone', report[1], report[2] } end
      return { 'gone' }
    end
    checkMark(meta[3], now)
    openStored(fromKey, meta[1], meta[2])
    oldOwner = meta[4]
  elseif mode == 'c' then
    openCopied(12, copied)
  else
    openNew()
  end
  if redis.call('EXISTS', toKey) == 1 then stop('exists') end
  applyChange(12 + 2 * copied)
  checkRoots()
  if total > maxSize then return { 'large', total } end
  local facts = factsOver(maxSize)
  if facts then return { 'large', facts } end

  local owner = ownerArgument
  if owner == '=' then
    owner = get('#u')
  elseif owner == '' then
    owner = false
  end
  if owner and strictTags and owner:sub(1, 1) ~= tagOf(toId) then stop('foreign') end

  -- The user's limit: count the user's live sessions besides this one, and choose the least recently seen
  -- to end when there are too many. Everything is read before anything is written.
  local stale, victims = {}, {}
  if owner and maxSessions > 0 then
    local live = {}
    for _, id in ipairs(redis.call('ZRANGE', userKey(owner), 0, -1)) do
      if id ~= fromId and id ~= toId then
        local seen = redis.call('HGET', sessionKey(id), '#t')
        if seen then live[#live + 1] = { id, tonumber(seen) or 0 } else stale[#stale + 1] = id end
      end
    end
    local excess = #live + 1 - maxSessions
    if excess > 0 then
      if policy == 'r' then stop('limit') end
      -- Ties of last-seen time go by id, byte by byte (Lua's < on strings follows the server's locale), as every
      -- store breaks them, so all of them end the same sessions.
      table.sort(live, function(a, b)
        if a[2] ~= b[2] then return a[2] < b[2] end
        local x, y = a[1], b[1]
        for i = 1, math.min(#x, #y) do
          local p, q = x:byte(i), y:byte(i)
          if p ~= q then return p < q end
        end
        return #x < #y
      end)
      for i = 1, excess do
        local victim = live[i][1]
        victims[#victims + 1] = { victim, readTree(sessionKey(victim), FACTS, {}) }
      end
    end
  end
  if oldOwner then probe(userKey(oldOwner)) end
  if owner then probe(userKey(owner)) end

  local reply = { 'ok' }
  for _, id in ipairs(stale) do redis.call('ZREM', userKey(owner), id) end
  for _, victim in ipairs(victims) do
    local id, facts = victim[1], victim[2]
    redis.call('DEL', sessionKey(id))
    unindex(id, owner)
    reply[#reply + 1] = id
    reply[#reply + 1] = #facts
    for i = 1, #facts do reply[#reply + 1] = facts[i] end
  end
  if mode == 'k' then
    redis.call('RENAME', fromKey, toKey)
    unindex(fromId, oldOwner)
  end
  put('#s', string.format('%d', total))
  put('#t', string.format('%d', now))
  put('#x', expiryField(ttl, now))
  put('#u', owner)
  put('#m', false)
  flush(toKey)
  expire(toKey, toId, ttl, now)
  redis.call('ZADD', KEYS[4], 0, toId)
  if owner then
    redis.call('HSET', KEYS[5], toId, owner)
    redis.call('ZADD', userKey(owner), 0, toId)
  end
  return reply
end

return run(main)
