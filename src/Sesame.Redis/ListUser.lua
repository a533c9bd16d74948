-- Sesame: one page of a user's live sessions, in id order (byte order), from the user's index (after Layout.lua).
-- Every entry of the index has the score 0, so ZRANGEBYLEX reads it in id order from where the last page stopped:
-- a page reads what it lists, not every session of the user (a client signing in again and again, with no
-- MaxSessionsPerUser, can bind any number of sessions to one user). Entries written before this version carry the time
-- their session was bound; a call that finds some sets at most its most ids of them to 0 and stops there.
-- Entries whose session is gone are taken out of the index (their expiry is still reported by the sweep). A call stops
-- once it has looked at its most ids, so that no one call holds Redis for long, and the store calls again from where it
-- stopped.
-- KEYS: the user's index.
-- ARGV: prefix, the id to continue after ('' to start), the most sessions in the page, the most ids to look at.
-- Reply: {state, last, then a summary per session (see summarize in Layout.lua)}, as ListShard.lua's: state 1 when more
-- sessions of the user follow the page, 0 when none does, 2 when the call stopped having looked at its most ids, `last`
-- being the id to continue after ('' otherwise, or to start again).
local after, limit, most = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])

local function main()
  local reply, stale, found, looked = { 0, '' }, {}, 0, 0
  local scored = redis.call('ZRANGEBYSCORE', KEYS[1], '(0', '+inf', 'LIMIT', 0, most)
  if #scored > 0 then
    -- Written, then nothing more read (see Layout.lua): the store calls again from the same place.
    for i = 1, #scored, 1000 do
      local zero = {}
      for j = i, math.min(i + 999, #scored) do
        zero[#zero + 1] = 0
        zero[#zero + 1] = scored[j]
      end
      redis.call('ZADD', KEYS[1], unpack(zero))
    end
    reply[1], reply[2] = 2, after
    return reply
  end
  local start = after == '' and '-' or '(' .. after
  local function walk()
    while true do
      -- At least 100 at a time: a run of entries with no session is read in few calls.
      local ids = redis.call('ZRANGEBYLEX', KEYS[1], start, '+', 'LIMIT', 0, math.min(math.max(limit - found + 1, 100), most - looked))
      if #ids == 0 then return end
      for _, id in ipairs(ids) do
        looked = looked + 1
        if found == limit then
          if redis.call('EXISTS', sessionKey(id)) == 1 then
            reply[1] = 1
            return
          end
          stale[#stale + 1] = id
        elseif summarize(id, reply) then
          found = found + 1
        else
          stale[#stale + 1] = id
        end
        start = '(' .. id
        if looked == most then
          reply[1], reply[2] = 2, id
          return
        end
      end
    end
  end
  walk()
  for i = 1, #stale, 1000 do
    redis.call('ZREM', KEYS[1], unpack(stale, i, math.min(i + 999, #stale)))
  end
  return reply
end

return run(main)
