-- Sesame: one page of a user's live sessions, in id order (byte order), from the user's index (after Layout.lua).
-- Every entry of the index has the score 0, so ZRANGEBYLEX reads it in id order from where the last page stopped:
-- a page reads what it lists, not every session of the user (a client signing in again and again, with no
-- MaxSessionsPerUser, can bind any number of sessions to one user). Entries an earlier Sesame wrote carry the time
-- their session was bound; a call that finds some sets at most its most ids of them to 0 and stops there, and the store
-- calls again from the same place. When Redis refuses that write (a script sent by EVALSHA while Redis is over
-- maxmemory or has too few replicas), or when the store asks for it (ARGV[5] '1': an earlier Sesame still running
-- scores new entries as fast as calls set them to 0), the call reads the index whole and sorts it, as before this
-- version.
-- Entries whose session is gone are taken out of the index (their expiry is still reported by the sweep), unless Redis
-- refuses the write then. A call stops once it has looked at its most ids, so that no one call holds Redis for long,
-- and the store calls again from where it stopped.
-- KEYS: the user's index.
-- ARGV: prefix, the id to continue after ('' to start), the most sessions in the page, the most ids to look at, '1'
-- to read the index whole.
-- Reply: {state, last, then a summary per session (see summarize in Layout.lua)}, as ListShard.lua's: state 1 when more
-- sessions of the user follow the page, 0 when none does, 2 when the call stopped having looked at its most ids, `last`
-- being the last id it looked at ('' otherwise) | {3, n} when the call set n entries to 0 and listed nothing.
local after, limit, most, whole = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == '1'

-- Sets the scores of `ids` to 0, 1,000 a command; gives false when Redis refused the first command (nothing written).
local function zero(ids)
  for i = 1, #ids, 1000 do
    local entries = {}
    for j = i, math.min(i + 999, #ids) do
      entries[#entries + 1] = 0
      entries[#entries + 1] = ids[j]
    end
    local result = redis.pcall('ZADD', KEYS[1], unpack(entries))
    if type(result) == 'table' and result.err then return i > 1 end
  end
  return true
end

-- The next `count` ids of the index after `after`, in byte order, a batch a call: by ZRANGEBYLEX, or from the
-- index read whole and sorted.
local function source()
  if not whole then return lexIds(KEYS[1], after) end
  local all = redis.call('ZRANGE', KEYS[1], 0, -1)
  table.sort(all, before)
  local i = 1
  if after ~= '' then
    while i <= #all and not before(after, all[i]) do i = i + 1 end
  end
  return function(count)
    local batch = {}
    for j = i, math.min(i + count - 1, #all) do batch[#batch + 1] = all[j] end
    i = i + #batch
    return batch
  end
end

local function main()
  local reply = { 0, '' }
  if not whole then
    local scored = redis.call('ZRANGEBYSCORE', KEYS[1], '(0', '+inf', 'LIMIT', 0, most)
    if #scored > 0 then
      -- Written, then nothing more read (see Layout.lua): the store calls again from the same place.
      if zero(scored) then return { 3, #scored } end
      whole = true
    end
  end
  local stale = listPage(source(), limit, most, reply)
  -- Housekeeping: when Redis refuses writes, the entries wait for a later listing.
  for i = 1, #stale, 1000 do
    redis.pcall('ZREM', KEYS[1], unpack(stale, i, math.min(i + 999, #stale)))
  end
  return reply
end

return run(main)
