-- Sesame: deletes one session with its entries in its shard's sets and its user's index (after Layout.lua).
-- KEYS: the session, its shard's expiry set, id set and bound hash.
-- ARGV: prefix, id.
-- Replies: {'deleted'} | {'none'} | {'none', reason, owner} for a session Redis ended that nobody had reported
-- (see ended in Layout.lua) | {'moving'} | {'stale', mark}. A key that does not hold a session is deleted too.
local key, id = KEYS[1], ARGV[2]

local function main()
  local now = nowMs()
  local kind = redis.call('TYPE', key)['ok']
  if kind == 'none' then
    local report = ended(id, now)
    if report then return { 'none', report[1], report[2] } end
    return { 'none' }
  end
  local owner = false
  if kind == 'hash' then
    local meta = redis.call('HMGET', key, '#m', '#u')
    checkMark(meta[1], now)
    owner = meta[2]
    if owner then probe(userKey(owner)) end
  end
  redis.call('DEL', key)
  unindex(id, owner)
  return { 'deleted' }
end

return run(main)
