-- Sesame: one page of a user's live sessions, in id order, from the user's index (after Layout.lua).
-- Entries whose session is gone are taken out of the index (their expiry is still reported by the sweep).
-- KEYS: the user's index.
-- ARGV: prefix, the id to continue after ('' to start), the most sessions in the page.
-- Reply: {more (1 when more sessions follow), then a summary per session (see summarize in Layout.lua)}.
local after, limit = ARGV[2], tonumber(ARGV[3])

local function main()
  local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
  table.sort(ids, before)
  local reply, stale, found = { 0 }, {}, 0
  for _, id in ipairs(ids) do
    if after == '' or before(after, id) then
      if found == limit then
        if redis.call('EXISTS', sessionKey(id)) == 1 then
          reply[1] = 1
          break
        end
        stale[#stale + 1] = id
      elseif summarize(id, reply) then
        found = found + 1
      else
        stale[#stale + 1] = id
      end
    end
  end
  for i = 1, #stale, 1000 do
    redis.call('ZREM', KEYS[1], unpack(stale, i, math.min(i + 999, #stale)))
  end
  return reply
end

return run(main)
