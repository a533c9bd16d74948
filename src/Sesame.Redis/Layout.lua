-- Sesame: what every script shares (this text is put before each script's own).
-- The store runs the scripts as one Redis function library (Redis 7 and later: this text and Patch.lua are run
-- once, when the library is loaded, and each script is a function), or as scripts by EVALSHA (this text and
-- Patch.lua are run again on every call). Either way KEYS and ARGV below are locals that bind sets at the start of
-- every call, and nothing here keeps anything from one call to the next.
--
-- Keys (P is the store's KeyPrefix, ARGV[1] in every script; t is a session id's shard tag, see tagOf):
--   P{t}:<id>        a session: one hash (its fields are described in Patch.lua)
--   P{t}expiry       ZSET id -> when the session expires (Unix ms; +inf for never), for the sweep
--   P{t}ids          ZSET id -> 0, the shard's sessions in id order, for listings
--   P{t}bound        HASH id -> owner, the sessions of the shard bound to a user
--   P{s}u:<user>     ZSET id -> 0, the user's sessions in id order: the user's index (an entry written by an
--                    earlier Sesame has the time its session was bound; ListUser.lua sets it to 0)
-- An owner is the user's shard character followed by the user id; s is that character, the first character
-- of every id Sesame gives the user's sessions, so a user's sessions, their shard's sets and the user's index
-- share one hash tag, and so one Redis Cluster slot: every script touches the keys of one slot.
-- A script reads everything it reads before it writes anything: in a slot being migrated, a read of a key
-- that already left raises an error, and then nothing has been written.
local PREFIX

-- Starts a call: its keys and arguments (KEYS and ARGV are the locals put before this text).
local function bind(keys, args)
  KEYS, ARGV = keys, args
  PREFIX = args[1]
end
local FACTS = '\4'

local function stop(...)
  error({ sesame = { ... } })
end

-- Runs the script's main function: a table raised by stop() is the reply; any other error is an error.
local function run(main)
  local ok, result = pcall(main)
  if ok then return result end
  if type(result) == 'table' and result.sesame then return result.sesame end
  error(result)
end

local function nowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A session id's shard tag (RedisLayout.tagOf): its first character when it is a letter, a digit, '-' or '_'
-- (every id Sesame makes); otherwise one character per range of first bytes, so that shards in byte order
-- hold ids in byte order.
local function tagOf(id)
  local b = id:byte(1)
  if (b >= 48 and b <= 57) or (b >= 65 and b <= 90) or (b >= 97 and b <= 122) or b == 45 or b == 95 then
    return id:sub(1, 1)
  end
  if b < 45 then return '!' end
  if b <= 47 then return '.' end
  if b <= 64 then return ':' end
  if b <= 94 then return '[' end
  if b == 96 then return '`' end
  return '~'
end

local function sessionKey(id) return PREFIX .. '{' .. tagOf(id) .. '}:' .. id end
local function shardKey(tag, name) return PREFIX .. '{' .. tag .. '}' .. name end
local function userKey(owner) return PREFIX .. '{' .. owner:sub(1, 1) .. '}u:' .. owner:sub(2) end

-- Reads a key that is about to be written without having been declared in KEYS, so that a slot migration
-- stops the script here, before its first write.
local function probe(key)
  redis.call('EXISTS', key)
end

-- Sets a session's expiry: the key's TTL and its entry in the shard's expiry set. Numbers go to redis.call as
-- integer text: a Lua number argument is written by Redis with "%.17g", which cost a third of a µs each.
local function expire(key, id, ttl, now)
  local expiry = shardKey(tagOf(id), 'expiry')
  if ttl < 0 then
    redis.call('PERSIST', key)
    redis.call('ZADD', expiry, '+inf', id)
  else
    redis.call('PEXPIRE', key, string.format('%d', ttl))
    redis.call('ZADD', expiry, string.format('%d', now + ttl), id)
  end
end

-- The '#x' field of a session whose expiry slides now to `ttl` ms (negative: never expires): the timeout, then the
-- deadline that sets (Unix ms; -1 for none), '<ttl> <deadline>'. With it a commit, and a load in the store
-- (ExpiryRefresh.fs), tell the time left from the hash without asking the key's TTL: one call fewer a commit, one
-- command fewer a load. An earlier Sesame wrote the timeout alone, and reads this as no timeout it knows (so it
-- slides).
local function expiryField(ttl, now)
  if ttl < 0 then return string.format('%d -1', ttl) end
  return string.format('%d %d', ttl, now + ttl)
end

-- What a session's '#x' (its text) holds: the timeout it names (nil for none) and the deadline that set, as
-- expiryField writes them; the deadline nil for an earlier Sesame's timeout alone. The deadline and the TTL are set
-- together, in one script: no slide moves one without the other.
local function expiryOf(field)
  if not field then return nil, nil end
  local timeout, deadline = field:match('^(%-?%d+) (%-?%d+)$')
  if not timeout then return tonumber(field), nil end
  return tonumber(timeout), tonumber(deadline)
end

-- The ms left to a session's expiry at `now` as PTTL gives it (-1 for none), from the deadline its '#x' holds; nil for
-- none.
local function leftOf(deadline, now)
  if not deadline then return nil end
  if deadline < 0 then return -1 end
  return math.max(0, deadline - now)
end

-- Whether a session's idle expiry is due to slide back to `ttl` ms (>= 0), its TTL now being `left` ms (PTTL's answer;
-- -1 for none): it has run down by the refresh `interval` (ms) since it last slid, or it is not a TTL the timeout gives.
-- The interval is capped at half the timeout: a timeout shorter than the interval would otherwise never slide, and a
-- session in use would expire.
local function slideDue(left, ttl, interval)
  return left < 0 or left > ttl or ttl - left >= math.min(interval, math.floor(ttl / 2))
end

-- Removes a session from its shard's sets and its user's index (the key itself is the caller's).
-- Gives ZREM's answer for the expiry set: 1 when this call took it out.
local function unindex(id, owner)
  local tag = tagOf(id)
  local removed = redis.call('ZREM', shardKey(tag, 'expiry'), id)
  redis.call('ZREM', shardKey(tag, 'ids'), id)
  if owner then
    redis.call('HDEL', shardKey(tag, 'bound'), id)
    redis.call('ZREM', userKey(owner), id)
  end
  return removed
end

-- For an id whose key is gone: when its shard's expiry set still names it, Redis ended it (expired it, or
-- evicted it under maxmemory) and nobody has reported it yet. Reads, then removes it from the indexes;
-- gives { 'expired' or 'evicted', owner or '' }, or nil when there is nothing to report.
local function ended(id, now)
  local tag = tagOf(id)
  local score = redis.call('ZSCORE', shardKey(tag, 'expiry'), id)
  if not score then return nil end
  local owner = redis.call('HGET', shardKey(tag, 'bound'), id)
  if owner then probe(userKey(owner)) end
  unindex(id, owner)
  local at = tonumber(score)
  if at and at <= now then return { 'expired', owner or '' } end
  return { 'evicted', owner or '' }
end

-- A session's mark, left by the first step of a move to another slot: '<deadline ms> <new id>'. A fresh mark
-- means the move is under way (the caller waits and tries again); a stale one, that its mover gave up or died
-- (the caller clears it, deletes the new id's key and tries again).
local function checkMark(mark, now)
  if not mark then return end
  local deadline = tonumber(mark:match('^(%d+) '))
  if deadline and deadline > now then stop('moving') end
  stop('stale', mark)
end

-- HMGET of a session's fields (the first of them always present in a session's hash): the values, or nil
-- when the key does not exist. Stops with 'corrupt' for a key of another type, or a hash without that field.
local function readMeta(key, ...)
  local values = redis.pcall('HMGET', key, ...)
  if values.err then
    stop('corrupt', 'the key holds a ' .. redis.call('TYPE', key)['ok'] .. ', not a hash')
  end
  -- No first field: no key (EXISTS, a cheaper reply than TYPE's for every new session), or a hash without it.
  if not values[1] and redis.call('EXISTS', key) == 0 then return nil end
  return values
end

-- The fields of the tree under `root` of the hash `key`, appended to `out` (field, value, ...). A node that is missing
-- ends the walk of its array: an array node's length is only as good as the hash, and one of 2^31 items would otherwise
-- hold Redis for minutes (the client refuses the tree it gets, see RedisLayout.fs).
local function readTree(key, root, out)
  local value = redis.call('HGET', key, root)
  if not value then return out end
  out[#out + 1] = root
  out[#out + 1] = value
  local first = value:byte(1)
  if first == 79 then
    -- A member held inline (its entry followed by '\5' and the leaf, see Patch.lua) has no field of its own.
    for name, part in value:gmatch('\1([^\1\3]*)\3%d+([^\1]*)') do
      if part == '' then readTree(key, root .. '\1' .. name, out) end
    end
  elseif first == 65 then
    local n = tonumber(value:sub(2)) or 0
    for i = 0, n - 1 do
      local before = #out
      readTree(key, root .. '\2' .. i, out)
      if #out == before then break end
    end
  end
  return out
end

-- Byte order (Lua's own string comparison follows the server's locale).
local function before(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = a:byte(i), b:byte(i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- A live session's summary for a listing, appended to `out`: id, size, last seen, ms left (-1: none), the
-- number of facts fields, then the facts fields. Gives false when the key is gone.
local function summarize(id, out)
  local key = sessionKey(id)
  local meta = redis.call('HMGET', key, '#s', '#t')
  if not meta[1] then return false end
  local facts = readTree(key, FACTS, {})
  out[#out + 1] = id
  out[#out + 1] = meta[1]
  out[#out + 1] = meta[2] or '0'
  out[#out + 1] = redis.call('PTTL', key)
  out[#out + 1] = #facts
  for i = 1, #facts do out[#out + 1] = facts[i] end
  return true
end

-- The ids of the sorted set `key` after `after` ('' to start) in byte order, read by ZRANGEBYLEX (every score 0): a
-- function that gives the next `count` of them on each call.
local function lexIds(key, after)
  local start = after == '' and '-' or '(' .. after
  return function(count)
    local batch = redis.call('ZRANGEBYLEX', key, start, '+', 'LIMIT', 0, count)
    if #batch > 0 then start = '(' .. batch[#batch] end
    return batch
  end
end

-- One page of a listing (ListShard.lua, ListUser.lua): the summaries of the live sessions among the ids `nextIds`
-- gives (in order, `count` at a time), appended to `reply` ({state, last}), until `limit` are found and one more live
-- id shows that more follow (state 1), the ids end (state 0), or it has looked at `most` ids (state 2, `last` the last
-- of them), so that no one call holds Redis for long. Gives the ids it found with no session.
local function listPage(nextIds, limit, most, reply)
  local stale, found, looked = {}, 0, 0
  while true do
    -- At least 100 at a time: a run of ids with no session is read in few calls.
    local ids = nextIds(math.min(math.max(limit - found + 1, 100), most - looked))
    if #ids == 0 then return stale end
    for _, id in ipairs(ids) do
      looked = looked + 1
      if found == limit then
        if redis.call('EXISTS', sessionKey(id)) == 1 then
          reply[1] = 1
          return stale
        end
        stale[#stale + 1] = id
      elseif summarize(id, reply) then
        found = found + 1
      else
        stale[#stale + 1] = id
      end
      if looked == most then
        reply[1], reply[2] = 2, id
        return stale
      end
    end
  end
end
