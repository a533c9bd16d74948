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
  local reply = { 0, '' }
  -- Ids with no session are left to the sweep.
  listPage(lexIds(KEYS[1], after), limit, most, reply)
  return reply
end

return run(main)
