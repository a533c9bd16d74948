-- Sesame: takes out of one shard's indexes the sessions whose expiry has passed and whose key Redis has
-- removed (expired, or evicted under maxmemory), and names them so the caller reports them (after Layout.lua).
-- Several app instances may sweep at once: the script is atomic, so each session is taken out, and so
-- reported, by one of them only.
-- KEYS: the shard's expiry set, id set and bound hash.
-- ARGV: prefix, the most sessions to look at.
-- Reply: {more (1 when the batch was full), the shard's session count, then id, owner ('' for none) per
-- session taken out}.
local batch = tonumber(ARGV[2])

local function main()
  local now = nowMs()
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, batch)
  local gone, owners, alive = {}, {}, {}
  for _, id in ipairs(due) do
    if redis.call('EXISTS', sessionKey(id)) == 0 then
      gone[#gone + 1] = id
      local owner = redis.call('HGET', KEYS[3], id)
      owners[#gone] = owner
      if owner then probe(userKey(owner)) end
    else
      alive[#alive + 1] = id
    end
  end
  local reply = { #due == batch and 1 or 0, 0 }
  for i, id in ipairs(gone) do
    if unindex(id, owners[i]) == 1 then
      reply[#reply + 1] = id
      reply[#reply + 1] = owners[i] or ''
    end
  end
  -- Alive past its expiry (the clock of a promoted replica, a session whose move was under way): its
  -- entry goes back to when the key really expires.
  for _, id in ipairs(alive) do
    local left = redis.call('PTTL', sessionKey(id))
    if left >= 0 then
      redis.call('ZADD', KEYS[1], now + left, id)
    else
      redis.call('ZADD', KEYS[1], '+inf', id)
    end
  end
  reply[2] = redis.call('ZCARD', KEYS[2])
  return reply
end

return run(main)
