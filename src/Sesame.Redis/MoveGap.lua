-- Sesame: the old id's side of a move to another Redis Cluster slot (after Layout.lua). A move across slots
-- cannot be one script; it is three, and this one runs the first and the third on the old id's slot:
--   'out':    marks the session as moving (field '#m' = '<deadline ms> <new id>') and gives its fields, which
--             the second step (Move.lua, mode 'c') writes under the new id;
--   'done':   deletes the old session and its index entries, if it still carries this move's mark;
--   'unmark': takes the mark away, if it still is this one (the move was refused, failed, or went stale).
-- While a session carries a fresh mark, commits, deletes and moves of it answer 'moving' (the store waits
-- and tries again); loads still read it. A mark past its deadline is stale: its mover gave up or died.
-- KEYS: the session, its shard's expiry set, id set and bound hash.
-- ARGV: prefix, id, operation, then for 'out' the new id and how long the mark holds (ms); for 'done' and
-- 'unmark' the mark.
-- Replies: 'out': {'ok', mark, {field, value, ...}} | {'gone', ended...} | {'moving'} | {'stale', mark};
--          'done', 'unmark': {'ok'} | {'lost'} (the key or the mark is gone).
local key, id, operation = KEYS[1], ARGV[2], ARGV[3]

local function main()
  local now = nowMs()
  if operation == 'out' then
    local kind = redis.call('TYPE', key)['ok']
    if kind == 'none' then
      local report = ended(id, now)
      if report then return { 'gone', report[1], report[2] } end
      return { 'gone' }
    end
    if kind ~= 'hash' then stop('corrupt', 'the key holds a ' .. kind .. ', not a hash') end
    local meta = redis.call('HMGET', key, '#v', '#m')
    if meta[1] ~= '2' and meta[1] ~= '3' then stop('corrupt', 'the hash has no Sesame format version 2 or 3') end
    checkMark(meta[2], now)
    local fields = redis.call('HGETALL', key)
    local mark = string.format('%d', now + tonumber(ARGV[5])) .. ' ' .. ARGV[4]
    redis.call('HSET', key, '#m', mark)
    return { 'ok', mark, fields }
  end
  local meta = redis.call('HMGET', key, '#m', '#u')
  if meta[1] ~= ARGV[4] then return { 'lost' } end
  if operation == 'unmark' then
    redis.call('HDEL', key, '#m')
    return { 'ok' }
  end
  if meta[2] then probe(userKey(meta[2])) end
  redis.call('DEL', key)
  unindex(id, meta[2])
  return { 'ok' }
end

return run(main)
