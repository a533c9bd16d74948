-- Sesame: one page of a shard's live sessions, in id order (byte order), from its id set (after Layout.lua).
-- KEYS: the shard's id set.
-- ARGV: prefix, the id to continue after ('' to start), the most sessions in the page, the most ids to look at.
-- Ids whose session is gone are skipped; the sweep takes them out and reports them. Until it does (a session Redis
-- evicted under maxmemory stays in the set until its expiry time), a shard may hold many of them in a row: a call
-- stops once it has looked at its most ids, so that no one call holds Redis for long, and the store calls again from
-- where it stopped.
-- Reply: {state, last, then a summary per session (see summarize in Layout.lua)}: state 1 when more sessions of the
-- shard follow the page, 0 when none does, 2 when the call stopped having looked at its most ids, `last` being the
-- last id it looked at ('' otherwise).
local after, limit, most = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])

local function main()
  local start = after == '' and '-' or '(' .. after
  local reply, found, looked = { 0, '' }, 0, 0
  while true do
    -- At least 100 at a time: a run of ids with no session is read in few calls.
    local ids = redis.call('ZRANGEBYLEX', KEYS[1], start, '+', 'LIMIT', 0, math.min(math.max(limit - found + 1, 100), most - looked))
    if #ids == 0 then return reply end
    for _, id in ipairs(ids) do
      looked = looked + 1
      if found == limit then
        if redis.call('EXISTS', sessionKey(id)) == 1 then
          reply[1] = 1
          return reply
        end
      elseif summarize(id, reply) then
        found = found + 1
      end
      start = '(' .. id
      if looked == most then
        reply[1], reply[2] = 2, id
        return reply
      end
    end
  end
end

return run(main)
