-- Sesame: one page of a shard's live sessions, in id order (byte order), from its id set (after Layout.lua).
-- KEYS: the shard's id set.
-- ARGV: prefix, the id to continue after ('' to start), the most sessions in the page.
-- Reply: {more (1 when more sessions of the shard follow), then a summary per session (see summarize in
-- Layout.lua)}. Ids whose session is gone are skipped; the sweep takes them out and reports them.
local after, limit = ARGV[2], tonumber(ARGV[3])

local function main()
  local start = after == '' and '-' or '(' .. after
  local reply, found = { 0 }, 0
  while true do
    local ids = redis.call('ZRANGEBYLEX', KEYS[1], start, '+', 'LIMIT', 0, limit - found + 1)
    if #ids == 0 then return reply end
    for _, id in ipairs(ids) do
      if found == limit then
        if redis.call('EXISTS', sessionKey(id)) == 1 then
          reply[1] = 1
          return reply
        end
      elseif summarize(id, reply) then
        found = found + 1
      end
      start = '(' .. id
    end
  end
end

return run(main)
