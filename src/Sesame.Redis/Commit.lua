-- Sesame: applies one folded patch to one session, atomically, by string manipulation only.
--
-- The session is the hash KEYS[1] (the only key this script touches), one field per node of
-- the JSON tree. A node's field name is its path: one segment after another, a key written
-- as \1 followed by the key (escaped so that it holds no byte below 0x20 and no backslash
-- other than its escapes), an index as \2 followed by its decimal digits; the root is the
-- empty name. A node's value is
--   a leaf's exact compact JSON text (null, true, false, a number, a string, [] or {}), or
--   'A' .. n for an array of n >= 1 items (its items are the nodes <path>\2 0 .. n-1), or
--   'O' followed by one '\1' .. key .. '\3' .. cost entry per member, in the object's order,
--   where cost is the member's bytes of JSON besides its value ("key": is cost bytes).
-- Field '#v' holds the format version ('1') and '#s' the session's size in bytes of compact
-- JSON, kept up to date by every commit. No value ever goes through cjson: numbers keep
-- every digit, [] stays an array, key order is the order of the 'O' entries.
--
-- ARGV: mustExist ('1'/'0'), idle timeout in ms (negative: never expire), size limit,
-- number of updates, then each update as
--   op ('s' set, 'a' append, 'i' increment, 'r' remove), k (segments), k pairs (segment, cost), then
--   's', 'a': node count, the value's JSON size, node count pairs (relative field name, node value)
--   'i': the increment's number text
--   'r': nothing.
-- Replies: {'ok'} | {'gone'} | {'large', size} | {'conflict', update, code, depth, info}
--        | {'corrupt', reason}. Nothing is written unless the reply is {'ok'}.
local key = KEYS[1]
local mustExist = ARGV[1] == '1'
local ttl = tonumber(ARGV[2])
local maxSize = tonumber(ARGV[3])
local updateCount = tonumber(ARGV[4])

local BYTE_O, BYTE_A, BYTE_MINUS, BYTE_0, BYTE_9 = 79, 65, 45, 48, 57
local MAX_EXPONENT = 4096

-- Reads go through `cache`; writes stay there, marked in `dirty`, until the whole patch has
-- been checked: a conflict or an oversized result leaves the hash untouched.
local cache, dirty = {}, {}
local creating = false
local total

local function stop(...)
  error({ sesame = { ... } })
end

local function get(field)
  local value = cache[field]
  if value == nil then
    if creating then value = false else value = redis.call('HGET', key, field) end
    cache[field] = value
  end
  return value
end

local function put(field, value)
  cache[field] = value
  dirty[field] = true
end

local function node(field)
  local value = get(field)
  if not value or value == '' then stop('corrupt', 'a container names a node that is missing') end
  return value
end

-- The length of an array node, or nil when the node is not an array.
local function arrayLength(value)
  if value:byte(1) == BYTE_A then
    local n = tonumber(value:sub(2))
    if not n or n < 1 then stop('corrupt', 'an array node has no valid length') end
    return n
  end
  if value == '[]' then return 0 end
  return nil
end

-- What a conflict message needs to describe a node: its first byte, or the whole 'A' node.
local function kindOf(value)
  if value:byte(1) == BYTE_A then return value end
  return value:sub(1, 1)
end

-- Deletes the subtree at `field` and gives its size in bytes of compact JSON.
local function drop(field)
  local value = node(field)
  put(field, false)
  local first = value:byte(1)
  if first == BYTE_O then
    local size, count = 1, 0
    for name, cost in value:gmatch('\1([^\1\3]*)\3(%d+)') do
      size = size + tonumber(cost) + 1 + drop(field .. '\1' .. name)
      count = count + 1
    end
    if count == 0 then stop('corrupt', 'an object node has no members') end
    return size
  elseif first == BYTE_A then
    local size = 1
    for i = 0, arrayLength(value) - 1 do
      size = size + 1 + drop(field .. '\2' .. i)
    end
    return size
  end
  return #value
end

-- The current update's path, one entry per segment.
local segField, segName, segIndex, segCost

-- Path.modify evaluates the levels below a missing node first: the deepest index past the
-- end of a missing array is the conflict reported.
local function missingBelow(u, from, k)
  for j = k, from, -1 do
    local index = segIndex[j]
    if index and index > 0 then stop('conflict', u, 'missing', j - 1, '') end
  end
end

-- Follows the path from the root. Gives the deepest level m that exists with its field and
-- value; raises the conflict Sesame's Path.modify would raise for a change that creates.
local function reach(u, k)
  local field, value = '', node('')
  for i = 1, k do
    local index, exists = segIndex[i], false
    if index then
      local n = arrayLength(value)
      if not n then stop('conflict', u, 'kind', i - 1, kindOf(value)) end
      exists = index < n
      if not exists then
        missingBelow(u, i + 1, k)
        if index > n then stop('conflict', u, 'past', i - 1, n) end
      end
    else
      if value:byte(1) == BYTE_O then
        exists = value:find('\1' .. segName[i] .. '\3', 2, true) ~= nil
      elseif value ~= '{}' then
        stop('conflict', u, 'kind', i - 1, kindOf(value))
      end
      if not exists then missingBelow(u, i + 1, k) end
    end
    if not exists then return i - 1, field, value end
    field = field .. segField[i]
    value = node(field)
  end
  return k, field, value
end

-- Creates the missing levels m+1 .. k below the existing node (field, value) at level m.
-- Gives the target's field and the bytes added, counting `leafSize` for the target itself.
local function attach(m, k, field, value, leafSize)
  local comma = 1
  if segIndex[m + 1] then
    local n = arrayLength(value)
    if n == 0 then comma = 0 end
    put(field, 'A' .. (n + 1))
  else
    if value == '{}' then
      comma = 0
      value = 'O'
    end
    put(field, value .. '\1' .. segName[m + 1] .. '\3' .. segCost[m + 1])
  end
  local added = comma + segCost[m + 1] + leafSize
  field = field .. segField[m + 1]
  for i = m + 1, k - 1 do
    if segIndex[i + 1] then
      put(field, 'A1')
    else
      put(field, 'O\1' .. segName[i + 1] .. '\3' .. segCost[i + 1])
    end
    added = added + 2 + segCost[i + 1]
    field = field .. segField[i + 1]
  end
  return field, added
end

-- Exact decimal arithmetic on JSON number text, as Sesame's JsonNumber.Add: the sum keeps
-- the finer scale and is written as JsonNumber.FromParts writes mantissa * 10^exponent.
local function decompose(text)
  local significand, exponent = text:match('^([^eE]+)[eE]([-+]?%d+)$')
  if not significand then significand, exponent = text, '0' end
  local negativeExponent = exponent:byte(1) == BYTE_MINUS
  local digits = (exponent:gsub('^[-+]', ''))
  digits = (digits:gsub('^0+', ''))
  if #digits > 15 then return nil end
  local e = tonumber(digits) or 0
  if negativeExponent then e = -e end
  local negative = significand:byte(1) == BYTE_MINUS
  if negative then significand = significand:sub(2) end
  local whole, fraction = significand:match('^(%d*)%.(%d*)$')
  if whole then
    significand = whole .. fraction
    e = e - #fraction
  end
  significand = (significand:gsub('^0+', ''))
  if e > 1073741823 or e < -1073741824 then return nil end
  return significand, e, negative and significand ~= ''
end

local function addDigits(a, b)
  local out, carry, i, j = {}, 0, #a, #b
  while i > 0 or j > 0 or carry > 0 do
    local d = carry
    if i > 0 then d = d + a:byte(i) - BYTE_0 end
    if j > 0 then d = d + b:byte(j) - BYTE_0 end
    carry = d >= 10 and 1 or 0
    out[#out + 1] = string.char(BYTE_0 + d % 10)
    i, j = i - 1, j - 1
  end
  return string.reverse(table.concat(out))
end

-- a - b for a >= b, without leading zeros ('' for zero).
local function subtractDigits(a, b)
  local out, borrow, i, j = {}, 0, #a, #b
  while i > 0 do
    local d = a:byte(i) - BYTE_0 - borrow
    if j > 0 then d = d - (b:byte(j) - BYTE_0) end
    if d < 0 then
      d = d + 10
      borrow = 1
    else
      borrow = 0
    end
    out[#out + 1] = string.char(BYTE_0 + d)
    i, j = i - 1, j - 1
  end
  return (string.reverse(table.concat(out)):gsub('^0+', ''))
end

local function fromParts(digits, e, negative)
  if digits == '' then
    digits, negative = '0', false
  end
  local sign = negative and '-' or ''
  if e > 0 then return sign .. digits .. 'e' .. string.format('%d', e) end
  if e == 0 then return sign .. digits end
  local scale = -e
  if #digits <= scale then digits = string.rep('0', scale - #digits + 1) .. digits end
  local split = #digits - scale
  return sign .. digits:sub(1, split) .. '.' .. digits:sub(split + 1)
end

local function addNumbers(a, b)
  local da, ea, na = decompose(a)
  local db, eb, nb = decompose(b)
  if not da or not db then return nil end
  -- Refused, as JsonNumber.Add refuses it, when either exponent is beyond +-MAX_EXPONENT.
  if math.abs(ea) > MAX_EXPONENT or math.abs(eb) > MAX_EXPONENT then return nil end
  local e = math.min(ea, eb)
  if da ~= '' then da = da .. string.rep('0', ea - e) end
  if db ~= '' then db = db .. string.rep('0', eb - e) end
  if na == nb then return fromParts(addDigits(da, db), e, na) end
  local larger = #da > #db or (#da == #db and da > db)
  if da == db then return fromParts('', e, false) end
  if larger then return fromParts(subtractDigits(da, db), e, na) end
  return fromParts(subtractDigits(db, da), e, nb)
end

local function set(u, k, first, count, size)
  local m, field, value = reach(u, k)
  local target = field
  if m == k then
    total = total - drop(field) + size
  else
    local added
    target, added = attach(m, k, field, value, size)
    total = total + added
  end
  for j = first, first + 2 * count - 1, 2 do
    put(target .. ARGV[j], ARGV[j + 1])
  end
end

-- Appends as setting index n of an array of n items does; a missing array is created.
local function append(u, k, first, count, size)
  local m, _, value = reach(u, k)
  local n = 0
  if m == k then
    n = arrayLength(value)
    if not n then stop('conflict', u, 'notarray', k, kindOf(value)) end
  end
  segField[k + 1] = '\2' .. n
  segIndex[k + 1] = n
  segCost[k + 1] = 0
  set(u, k + 1, first, count, size)
end

local function increment(u, k, by)
  local m, field, value = reach(u, k)
  if m < k then
    local target, added = attach(m, k, field, value, #by)
    put(target, by)
    total = total + added
    return
  end
  local first = value:byte(1)
  if first ~= BYTE_MINUS and (first < BYTE_0 or first > BYTE_9) then stop('conflict', u, 'notnumber', k, kindOf(value)) end
  local sum = addNumbers(value, by)
  if not sum then stop('conflict', u, 'overflow', k, value) end
  put(field, sum)
  total = total + #sum - #value
end

-- Removing what is not there (or lies below a node of the wrong kind) does nothing.
local function remove(u, k)
  if k == 0 or segIndex[k] then stop('conflict', u, 'removeindex', k, '') end
  local parentField, parentValue
  local field, value = '', node('')
  for i = 1, k do
    local index = segIndex[i]
    if index then
      local n = arrayLength(value)
      if not n or index >= n then return end
    elseif value:byte(1) ~= BYTE_O or not value:find('\1' .. segName[i] .. '\3', 2, true) then
      return
    end
    parentField, parentValue = field, value
    field = field .. segField[i]
    value = node(field)
  end
  local size = drop(field)
  local from = parentValue:find('\1' .. segName[k] .. '\3', 2, true)
  local to = parentValue:find('\1', from + 1, true)
  local rest = parentValue:sub(1, from - 1) .. (to and parentValue:sub(to) or '')
  if rest == 'O' then
    put(parentField, '{}')
    total = total - size - segCost[k]
  else
    put(parentField, rest)
    total = total - size - segCost[k] - 1
  end
end

local function flush()
  local sets, deletes = {}, {}
  for field in pairs(dirty) do
    local value = cache[field]
    if value then
      sets[#sets + 1] = field
      sets[#sets + 1] = value
    else
      deletes[#deletes + 1] = field
    end
  end
  -- unpack is bounded by Lua's stack: write in slices.
  for i = 1, #deletes, 1000 do
    redis.call('HDEL', key, unpack(deletes, i, math.min(i + 999, #deletes)))
  end
  for i = 1, #sets, 1000 do
    redis.call('HSET', key, unpack(sets, i, math.min(i + 999, #sets)))
  end
end

local function main()
  local kind = redis.call('TYPE', key)['ok']
  if kind == 'none' then
    if mustExist then return { 'gone' } end
    creating = true
    put('#v', '1')
    put('', '{}')
    total = 2
  elseif kind ~= 'hash' then
    stop('corrupt', 'the key holds a ' .. kind .. ', not a hash')
  else
    local meta = redis.call('HMGET', key, '#v', '#s')
    if meta[1] ~= '1' then stop('corrupt', 'the hash has no Sesame format version') end
    total = tonumber(meta[2])
    if not total then stop('corrupt', 'the hash has no valid size') end
  end

  local p = 5
  for u = 1, updateCount do
    local op, k = ARGV[p], tonumber(ARGV[p + 1])
    p = p + 2
    segField, segName, segIndex, segCost = {}, {}, {}, {}
    for i = 1, k do
      local segment = ARGV[p]
      segField[i] = segment
      segCost[i] = tonumber(ARGV[p + 1])
      if segment:byte(1) == 2 then segIndex[i] = tonumber(segment:sub(2)) else segName[i] = segment:sub(2) end
      p = p + 2
    end
    if op == 's' or op == 'a' then
      local count = tonumber(ARGV[p])
      if op == 's' then
        set(u, k, p + 2, count, tonumber(ARGV[p + 1]))
      else
        append(u, k, p + 2, count, tonumber(ARGV[p + 1]))
      end
      p = p + 2 + 2 * count
    elseif op == 'i' then
      increment(u, k, ARGV[p])
      p = p + 1
    elseif op == 'r' then
      remove(u, k)
    else
      return redis.error_reply('Sesame commit: unknown operation ' .. tostring(op))
    end
  end

  if total > maxSize then return { 'large', total } end
  put('#s', string.format('%d', total))
  flush()
  if ttl < 0 then
    redis.call('PERSIST', key)
  else
    redis.call('PEXPIRE', key, ttl)
  end
  return { 'ok' }
end

local ok, result = pcall(main)
if ok then return result end
if type(result) == 'table' and result.sesame then return result.sesame end
error(result)
