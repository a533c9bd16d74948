-- Sesame: applies a session change to a session's hash, atomically, by string manipulation only
-- (this text comes after Layout.lua and before the script that uses it).
--
-- A session is one hash holding two trees: its data (the tree handlers read and change) and its facts
-- (Sesame's own: user, device, shape, flash), one field per node (but leaves held inline, below). A node's field
-- name is its tree's root followed by its path: one segment after another, a key written as \1 followed by the key
-- (escaped so that it holds no byte below 0x20 and no backslash other than its escapes), an index as \2 followed by
-- its decimal digits. The data tree's root is the empty name; the facts tree's root is \4, a byte no data field
-- starts with. A node's value is
--   a leaf's exact compact JSON text (null, true, false, a number, a string, [] or {}), or
--   'A' .. n for an array of n >= 1 items (its items are the nodes <path>\2 0 .. n-1), or
--   'O' followed by one '\1' .. key .. '\3' .. cost entry per member, in the object's order,
--   where cost is the member's bytes of JSON besides its value ("key": is cost bytes); a member that is a leaf may be
--   held inline, its entry followed by '\5' .. the leaf's JSON text, and then it has no field of its own.
-- A leaf is held inline only while its object's node stays within the change's inline limit (0: never): the node is
-- then one field where it would be one per member, each with its full path for a name. Under Redis's listpack limit
-- (hash-max-listpack-value) a node stays compact, so the limit should not exceed it. A hash that may hold inline
-- leaves is format '3'; format '2' holds none (what Sesame wrote before, and still writes with the limit 0, which a
-- rolling upgrade from it needs). Both are read.
-- Fields starting with '#' are not nodes: '#v' the format version ('2' or '3'), '#s' the data tree's size in bytes
-- of compact JSON (kept up to date by every change), '#t' when the session was last seen (Unix ms), '#x' the idle
-- timeout (ms; -1 for none) its expiry last slid to and the deadline (Unix ms; -1 for none) that set (see
-- expiryField in Layout.lua; an earlier Sesame wrote the timeout alone), '#u' its owner (see Layout.lua) when it is
-- bound to a user, '#m' the mark of a move to another slot under way. No
-- value ever goes through cjson: numbers keep every digit, [] stays an array, key order is the order of the
-- 'O' entries.
--
-- A change in ARGV, from a given position: the shape the upgrade starts from ('' for no upgrade) and the one
-- it ends at, the number of updates the upgrade makes (they come first; the last of them sets the facts'
-- shape), the number of updates in all, the inline limit in bytes, then each update as
--   op ('s' set, 'a' append, 'i' increment, 'r' remove, 'n' set null then remove; upper case for the facts tree),
--   k (segments), k pairs (segment, cost), then
--   's', 'a': node count, the value's JSON size, node count pairs (relative field name, node value; the app holds
--        leaves inline in the value's object nodes within the limit, and the script a leaf value set at a key)
--   'i': the increment's number text
--   'r', 'n': nothing.
-- 'n' stands for two updates (a set of null, then a remove of the same key path) and is counted as two: the fold leaves
-- that pair for a key removed after it created its containers, and one step sends its path once.
-- Refusals (raised with stop): {'conflict', update, code, depth, info} | {'shape'} | {'notobject'} | {'corrupt', reason}.
-- Nothing is written until the script that uses the engine calls flush.
local BYTE_O, BYTE_A, BYTE_MINUS, BYTE_0, BYTE_9, BYTE_LOWER_A, BYTE_INLINE = 79, 65, 45, 48, 57, 97, 5
local MAX_EXPONENT = 4096

-- Reads go through `cache`; writes stay there, marked in `dirty`, until the whole patch has
-- been checked: a conflict or an oversized result leaves the hash untouched. Each call starts them afresh
-- (openStored, openNew, openCopied): in a function library they would otherwise outlive the call.
local cache, dirty = {}, {}
-- The hash the engine reads nodes from; false when every node is in `cache` (a new session, or one copied
-- from another slot).
local readKey = false
-- The data tree's size in bytes of compact JSON.
local total
-- How many bytes of compact JSON the change has added to the facts so far (negative: taken away). The facts' size is
-- not kept in the hash: factsOver measures it, and only when this is positive.
local factsGrowth = 0
-- The facts' size before the change when it is known without reading them: 2 ('{}') for a new session, nil otherwise.
local factsBefore = nil
-- The tree the current update changes ('' data, FACTS facts) and whether it is the data tree.
local root, sized = '', true
-- The change's inline limit: the longest object node, in bytes, that holds a leaf inline (0: none is).
local limit = 0
-- The hash's format version as the change leaves it.
local version

local function grow(bytes)
  if sized then total = total + bytes else factsGrowth = factsGrowth + bytes end
end

local function get(field)
  local value = cache[field]
  if value == nil then
    if readKey then value = redis.call('HGET', readKey, field) else value = false end
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

-- The inline leaf whose '\5' is at `after` in the node `value`: where it ends (before the next entry), and its text,
-- never empty and never a container's node.
local function inlineLeaf(value, after)
  local ends = value:find('\1', after + 1, true)
  local last = ends and ends - 1 or #value
  if last == after then stop('corrupt', 'an inline leaf is empty') end
  local first = value:byte(after + 1)
  if first == BYTE_O or first == BYTE_A then stop('corrupt', 'an inline leaf is malformed') end
  return last, value:sub(after + 1, last)
end

-- The entry of the member `name` in the object node `value`: where it starts (its '\1'), where its cost's digits end,
-- where the entry ends, and its inline leaf (nil when the member has a field of its own); nil when there is none.
local function entryAt(value, from, name)
  local digits = from + #name + 2
  local after = value:find('[^%d]', digits)
  if after == digits or digits > #value then stop('corrupt', 'an object member is malformed') end
  if not after then return from, #value, #value, nil end
  local mark = value:byte(after)
  if mark == 1 then return from, after - 1, after - 1, nil end
  if mark ~= BYTE_INLINE then stop('corrupt', 'an object member is malformed') end
  local last, leaf = inlineLeaf(value, after)
  return from, after - 1, last, leaf
end

local function entryOf(value, name)
  local from = value:find('\1' .. name .. '\3', 2, true)
  if not from then return nil end
  return entryAt(value, from, name)
end

-- Stops with 'corrupt' unless the entries a walk of an object node's members matched (`covered` bytes of them) are the
-- whole node after its 'O': an entry the pattern cannot match would otherwise be passed over without a word.
local function coveredAll(value, covered)
  if covered ~= #value - 1 then stop('corrupt', 'an object member is malformed') end
end

-- The size of an inline part of an entry ('' or '\5' .. leaf) as gmatch gives it: the leaf's bytes.
local function inlineSize(part)
  if part == '' then return 0 end
  if part:byte(1) ~= BYTE_INLINE or #part == 1 then stop('corrupt', 'an object member is malformed') end
  return #part - 1
end

-- Deletes the subtree at `field` and gives its size in bytes of compact JSON.
local function drop(field)
  local value = node(field)
  put(field, false)
  local first = value:byte(1)
  if first == BYTE_O then
    local size, count, covered = 1, 0, 0
    for name, cost, part in value:gmatch('\1([^\1\3]*)\3(%d+)([^\1]*)') do
      if part == '' then
        size = size + tonumber(cost) + 1 + drop(field .. '\1' .. name)
      else
        size = size + tonumber(cost) + 1 + inlineSize(part)
      end
      count = count + 1
      covered = covered + 2 + #name + #cost + #part
    end
    if count == 0 then stop('corrupt', 'an object node has no members') end
    coveredAll(value, covered)
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

-- The current update's path, one entry per segment: its field name part, its key (nil for an index), its index (nil
-- for a key), and its cost as the ARGV's integer text (concatenated into 'O' nodes as it is; tonumber where counted).
-- Made once and overwritten from 1 to k by each update (nothing reads past k), not made anew per update: every table
-- Lua makes and collects costs Redis 0.06-0.2 µs.
local segField, segName, segIndex, segCost = {}, {}, {}, {}

-- entryOf for the current update's segment i (a key), faster: the entry's cost is the segment's, so where its digits
-- end is known without a pattern (when its digits are the segment's cost; otherwise it is parsed as entryOf does).
local function memberOf(value, i)
  local name, cost = segName[i], segCost[i]
  local from = value:find('\1' .. name .. '\3', 2, true)
  if not from then return nil end
  local digits = from + #name + 2
  local after = digits + #cost
  local same = after - 1 <= #value
  for j = 1, #cost do
    if value:byte(digits + j - 1) ~= cost:byte(j) then same = false end
  end
  if same then
    local mark = value:byte(after)
    if not mark or mark == 1 then return from, after - 1, after - 1, nil end
    if mark == BYTE_INLINE then
      local last, leaf = inlineLeaf(value, after)
      return from, after - 1, last, leaf
    end
  end
  return entryAt(value, from, name)
end

-- Reads the uncached nodes on the current update's path (its tree's root, then one field per level, down to
-- level k) in one HMGET rather than one HGET each as reach and remove walk down: a field that is not there is
-- cached as missing, as get caches it.
local function prefetch(k)
  if not readKey then return end
  local wanted, field = {}, root
  if cache[field] == nil then wanted[1] = field end
  for i = 1, k do
    field = field .. segField[i]
    if cache[field] == nil then wanted[#wanted + 1] = field end
  end
  if #wanted < 2 then return end
  local values = redis.call('HMGET', readKey, unpack(wanted))
  for i = 1, #wanted do cache[wanted[i]] = values[i] or false end
end

-- Path.modify evaluates the levels below a missing node first: the deepest index past the
-- end of a missing array is the conflict reported.
local function missingBelow(u, from, k)
  for j = k, from, -1 do
    local index = segIndex[j]
    if index and index > 0 then stop('conflict', u, 'missing', j - 1, '') end
  end
end

-- After reach: the field of the object node that holds the node reach gave inline (a leaf with no field of its own),
-- or false; and, when that node is a member of an object, the object node's value, where the member's entry ends its
-- cost and where it ends (see putLeafAt).
local inlineIn = false
local memberNode, memberDigits, memberLast

-- Follows the path from the root. Gives the deepest level m that exists with its field and
-- value; raises the conflict Sesame's Path.modify would raise for a change that creates.
local function reach(u, k)
  local field, value = root, node(root)
  inlineIn = false
  for i = 1, k do
    local index, exists, inline = segIndex[i], false, nil
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
        local from, digits, last, leaf = memberOf(value, i)
        exists, inline = from ~= nil, leaf
        memberNode, memberDigits, memberLast = value, digits, last
      elseif value ~= '{}' then
        stop('conflict', u, 'kind', i - 1, kindOf(value))
      end
      if not exists then missingBelow(u, i + 1, k) end
    end
    if not exists then return i - 1, field, value end
    if inline then
      inlineIn = field
      field = field .. segField[i]
      value = inline
    else
      inlineIn = false
      field = field .. segField[i]
      value = node(field)
    end
  end
  return k, field, value
end

-- Moves the inline leaves of the object node `field` (its value `value`, past the limit) to fields of their own: a node
-- longer than the limit holds only its members' entries, as it would had no leaf been inline. Gives the node's new
-- value.
local function spill(field, value)
  local entries, covered = {}, 0
  for name, cost, part in value:gmatch('\1([^\1\3]*)\3(%d+)([^\1]*)') do
    entries[#entries + 1] = '\1' .. name .. '\3' .. cost
    if inlineSize(part) > 0 then
      local own = field .. '\1' .. name
      -- A member both inline and in a field of its own is no tree: refused, rather than one of its values lost.
      if get(own) then stop('corrupt', 'an inline leaf has a field of its own too') end
      local _, leaf = inlineLeaf(part, 1)
      put(own, leaf)
    end
    covered = covered + 2 + #name + #cost + #part
  end
  coveredAll(value, covered)
  value = 'O' .. table.concat(entries)
  put(field, value)
  return value
end

-- Whether an object node's value is past the limit with leaves inline (written under a longer limit, or grown by a new
-- member): it must give them up (spill).
local function pastLimit(value)
  return limit > 0 and #value > limit and value:find('\5', 2, true) ~= nil
end

-- Writes an object node's new value, giving up its inline leaves when it is past the limit; gives the value written.
local function putObject(field, value)
  if pastLimit(value) then return spill(field, value) end
  put(field, value)
  return value
end

-- Takes an inline leaf out of its entry in the object node `parent` (the member then has a field of its own, or is
-- being replaced).
local function uninline(parent, name)
  local value = node(parent)
  local _, digits, last, inline = entryOf(value, name)
  if inline then putObject(parent, value:sub(1, digits) .. value:sub(last + 1)) end
end

-- Writes the leaf text `leaf` as a member of the object node `parent`, whose value is `value` and whose entry for the
-- member ends its cost at `digits` and itself at `last` (after an inline leaf when `inline`): inline when the node then
-- stays within the limit, else in the member's own field `field`. Whatever field the member had is the caller's to
-- drop first.
local function putLeafAt(parent, value, digits, last, inline, field, leaf)
  if limit > 0 and #value - (last - digits) + 1 + #leaf <= limit then
    put(parent, value:sub(1, digits) .. '\5' .. leaf .. value:sub(last + 1))
  else
    put(field, leaf)
    if inline then
      putObject(parent, value:sub(1, digits) .. value:sub(last + 1))
    elseif pastLimit(value) then
      spill(parent, value)
    end
  end
end

-- putLeafAt for a member that attach has just made: the last entry of its object's node.
local function putAttached(parent, value, field, leaf)
  putLeafAt(parent, value, #value, #value, false, field, leaf)
end

-- Creates the missing levels m+1 .. k below the existing node (field, value) at level m (reach's answer, so inlineIn
-- tells whether that node is an inline leaf: an empty object or array, which then gets a field of its own).
-- Gives the target's field and the bytes added, counting `leafSize` for the target itself, and the field and value of
-- the node above the target, whose last entry is the target's when it is an object. An object node the new member
-- makes longer than the limit gives up its inline leaves (spill).
local function attach(m, k, field, value, leafSize)
  if inlineIn then uninline(inlineIn, segName[m]) end
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
    value = value .. '\1' .. segName[m + 1] .. '\3' .. segCost[m + 1]
    value = putObject(field, value)
  end
  local added = comma + tonumber(segCost[m + 1]) + leafSize
  local parent = field
  field = field .. segField[m + 1]
  for i = m + 1, k - 1 do
    if segIndex[i + 1] then
      put(field, 'A1')
    else
      value = 'O\1' .. segName[i + 1] .. '\3' .. segCost[i + 1]
      put(field, value)
    end
    added = added + 2 + tonumber(segCost[i + 1])
    parent = field
    field = field .. segField[i + 1]
  end
  return field, added, parent, value
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

-- The number an integer's text of at most 15 digits stands for (exact in a double, as is the sum of two: below
-- 2^53), or nil.
local function smallInteger(text)
  local digits = text:byte(1) == BYTE_MINUS and #text - 1 or #text
  if digits >= 1 and digits <= 15 and text:find('^%-?%d+$') then return tonumber(text) end
  return nil
end

local function addNumbers(a, b)
  -- Counters: two small integers add as doubles, written as JsonNumber.Add writes an integer sum (no exponent, no
  -- '-0'), in about a sixth of the time of the exact digit arithmetic below.
  local x, y = smallInteger(a), smallInteger(b)
  if x and y then return string.format('%d', x + y) end
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

-- Makes room for a value of `size` bytes at the current update's path: drops what is there, or creates the missing
-- levels. Gives the value's field.
local function place(u, k, size)
  local m, field, value = reach(u, k)
  if m == k then
    if inlineIn then
      uninline(inlineIn, segName[k])
      grow(size - #value)
    else
      grow(size - drop(field))
    end
    return field
  end
  local target, added = attach(m, k, field, value, size)
  grow(added)
  return target
end

-- The field of the object node above a member's field (the current update's path, k >= 1).
local function parentOf(field, k)
  return field:sub(1, #field - #segField[k])
end

-- Sets the leaf text `leaf` at the current update's path, whose last segment is a key: inline in its object's node
-- when it fits (putLeafAt), as place then put would set it otherwise.
local function setLeaf(u, k, leaf)
  local m, field, value = reach(u, k)
  if m == k then
    if inlineIn then
      grow(#leaf - #value)
      putLeafAt(inlineIn, memberNode, memberDigits, memberLast, true, field, leaf)
      return
    end
    grow(#leaf - drop(field))
    putLeafAt(parentOf(field, k), memberNode, memberDigits, memberLast, false, field, leaf)
    return
  end
  local target, added, parent, parentValue = attach(m, k, field, value, #leaf)
  grow(added)
  putAttached(parent, parentValue, target, leaf)
end

local function set(u, k, first, count, size)
  -- One node that is a leaf (not 'O' or 'A'), at a key: it may go inline.
  if count == 1 and k > 0 and not segIndex[k] then
    local leaf = ARGV[first + 1]
    local kind = leaf:byte(1)
    if kind ~= BYTE_O and kind ~= BYTE_A then
      setLeaf(u, k, leaf)
      return
    end
  end
  local target = place(u, k, size)
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
  segCost[k + 1] = '0'
  set(u, k + 1, first, count, size)
end

local function increment(u, k, by)
  local m, field, value = reach(u, k)
  if m < k then
    local target, added, parent, parentValue = attach(m, k, field, value, #by)
    grow(added)
    if segIndex[k] then put(target, by) else putAttached(parent, parentValue, target, by) end
    return
  end
  local first = value:byte(1)
  if first ~= BYTE_MINUS and (first < BYTE_0 or first > BYTE_9) then stop('conflict', u, 'notnumber', k, kindOf(value)) end
  local sum = addNumbers(value, by)
  if not sum then stop('conflict', u, 'overflow', k, value) end
  -- A number held inline stays inline while it fits; one in a field of its own stays there.
  if inlineIn then putLeafAt(inlineIn, memberNode, memberDigits, memberLast, true, field, sum) else put(field, sum) end
  grow(#sum - #value)
end

-- Removing what is not there (or lies below a node of the wrong kind) does nothing.
local function remove(u, k)
  if k == 0 or segIndex[k] then stop('conflict', u, 'removeindex', k, '') end
  local parentField, parentValue
  local field, value = root, node(root)
  local inline
  for i = 1, k do
    local index = segIndex[i]
    inline = nil
    if index then
      local n = arrayLength(value)
      if not n or index >= n then return end
    else
      if value:byte(1) ~= BYTE_O then return end
      local from, _, _, leaf = memberOf(value, i)
      if not from then return end
      inline = leaf
    end
    parentField, parentValue = field, value
    field = field .. segField[i]
    value = inline or node(field)
  end
  local size = inline and #inline or drop(field)
  local from = parentValue:find('\1' .. segName[k] .. '\3', 2, true)
  local to = parentValue:find('\1', from + 1, true)
  local rest = parentValue:sub(1, from - 1) .. (to and parentValue:sub(to) or '')
  if rest == 'O' then
    put(parentField, '{}')
    grow(-size - tonumber(segCost[k]))
  else
    putObject(parentField, rest)
    grow(-size - tonumber(segCost[k]) - 1)
  end
end

-- Updates u and u + 1: a set of null at a key path, then its remove. The key's containers are made as the set makes
-- them, and what it would refuse is refused as update u; then the key is gone (a remove of a key just set never fails).
local function nullThenRemove(u, k)
  setLeaf(u, k, 'null')
  remove(u + 1, k)
end

-- Starts from a stored session: the hash `key`, whose '#v' and '#s' are given.
local function openStored(key, stored, size)
  cache, dirty, factsGrowth, factsBefore = {}, {}, 0, nil
  if stored ~= '2' and stored ~= '3' then stop('corrupt', 'the hash has no Sesame format version 2 or 3') end
  version = stored
  total = tonumber(size)
  if not total then stop('corrupt', 'the hash has no valid size') end
  readKey = key
end

-- Starts from the empty session (no key read).
local function openNew()
  cache, dirty, factsGrowth, factsBefore = {}, {}, 0, 2
  readKey = false
  version = '2'
  put('#v', version)
  put('', '{}')
  put(FACTS, '{}')
  total = 2
end

-- Starts from a session's fields copied from another slot (field, value, ... in ARGV from `first`, `count`
-- pairs): all of them are written.
local function openCopied(first, count)
  cache, dirty, factsGrowth, factsBefore = {}, {}, 0, nil
  readKey = false
  for i = first, first + 2 * count - 1, 2 do put(ARGV[i], ARGV[i + 1]) end
  version = cache['#v']
  if version ~= '2' and version ~= '3' then stop('corrupt', 'the hash has no Sesame format version 2 or 3') end
  total = tonumber(cache['#s'])
  if not total then stop('corrupt', 'the hash has no valid size') end
end

-- The facts' shape version as SessionMeta.shapeOf reads it (missing, or not an integer from 0 to 2^31-1: 0).
local function shapeOf()
  local facts, value = get(FACTS), false
  if facts and facts:byte(1) == BYTE_O then
    local from, _, _, inline = entryOf(facts, 'shape')
    if from then value = inline or get(FACTS .. '\1shape') end
  end
  if not value or not value:match('^-?%d+$') then return 0 end
  local n = tonumber(value)
  if n >= 0 and n <= 2147483647 then return n end
  return 0
end

local p

-- Reads the update at ARGV[p] and applies it when `apply` (p moves past it either way). Gives how many updates it
-- stands for.
local function applyUpdate(u, apply)
  local op, k = ARGV[p], tonumber(ARGV[p + 1])
  p = p + 2
  for i = 1, k do
    local segment = ARGV[p]
    segField[i] = segment
    segCost[i] = ARGV[p + 1]
    if segment:byte(1) == 2 then
      segIndex[i], segName[i] = tonumber(segment:sub(2)), nil
    else
      segIndex[i], segName[i] = nil, segment:sub(2)
    end
    p = p + 2
  end
  -- The op's byte: lower case for the data tree, upper case for the facts.
  local code = op:byte(1) or 0
  if code >= BYTE_LOWER_A then root, sized = '', true else root, sized = FACTS, false end
  local lower = code >= BYTE_LOWER_A and op or op:lower()
  if apply then prefetch(k) end
  if lower == 's' or lower == 'a' then
    local count = tonumber(ARGV[p])
    if apply then
      if lower == 's' then
        set(u, k, p + 2, count, tonumber(ARGV[p + 1]))
      else
        append(u, k, p + 2, count, tonumber(ARGV[p + 1]))
      end
    end
    p = p + 2 + 2 * count
  elseif lower == 'i' then
    if apply then increment(u, k, ARGV[p]) end
    p = p + 1
  elseif lower == 'r' then
    if apply then remove(u, k) end
  elseif lower == 'n' then
    if apply then nullThenRemove(u, k) end
    return 2
  else
    error('Sesame: unknown operation ' .. tostring(op))
  end
  return 1
end

-- Applies the change at ARGV[start] as SessionChange.ApplyTo does: the upgrade when the facts' shape is the
-- one it starts from (skipped when it already is the one it ends at, refused otherwise), then the rest.
local function applyChange(start)
  p = start
  local from, to = ARGV[p], ARGV[p + 1]
  local upgradeCount, count = tonumber(ARGV[p + 2]), tonumber(ARGV[p + 3])
  limit = tonumber(ARGV[p + 4])
  p = p + 5
  -- A hash that may hold inline leaves says so before any is written (an earlier Sesame refuses it, where it would
  -- misread the leaves).
  if limit > 0 and version ~= '3' then
    version = '3'
    put('#v', version)
  end
  local upgrading = false
  if from ~= '' then
    local shape = shapeOf()
    if shape == tonumber(from) then
      upgrading = true
    elseif shape ~= tonumber(to) then
      stop('shape')
    end
  end
  local u = 1
  while u <= count do u = u + applyUpdate(u, upgrading or u > upgradeCount) end
end

-- A session's tree and its facts are objects (as Sesame's StoredSession requires): a change that leaves either
-- root something else is refused.
local function checkRoot(r)
  local value = cache[r]
  if value and value ~= '{}' and value:byte(1) ~= BYTE_O then stop('notobject') end
end

local function checkRoots()
  checkRoot('')
  checkRoot(FACTS)
end

-- What a node adds to its tree's compact JSON besides its children: a leaf its text; an array of n items n + 1; an
-- object 1, and each member's cost and a comma or brace, and its inline leaves.
local function nodeSize(value)
  local first = value:byte(1)
  if first == BYTE_O then
    local size, covered = 1, 0
    for name, cost, part in value:gmatch('\1([^\1\3]*)\3(%d+)([^\1]*)') do
      size = size + tonumber(cost) + 1 + inlineSize(part)
      covered = covered + 2 + #name + #cost + #part
    end
    coveredAll(value, covered)
    return size
  elseif first == BYTE_A then
    return arrayLength(value) + 1
  end
  return #value
end

-- The facts' size in bytes of compact JSON as the change leaves them: the sum of their nodes' sizes, each node as the
-- change left it (the cache) or as stored. One HGETALL: a walk of the tree, a call per node or per level, cost Redis
-- several times what loading the session does when the facts hold many nodes.
local function factsSize()
  local size = 0
  if readKey then
    local stored = redis.call('HGETALL', readKey)
    for i = 1, #stored, 2 do
      local field = stored[i]
      if field:byte(1) == 4 and cache[field] == nil then size = size + nodeSize(stored[i + 1]) end
    end
  end
  for field, value in pairs(cache) do
    if value and field:byte(1) == 4 then size = size + nodeSize(value) end
  end
  return size
end

-- The facts' size in bytes of compact JSON when the change grew them past `limit` (the data tree's): flash values are
-- the app's data, often its client's input, and are bounded as the tree is, atomically against what concurrent
-- requests committed (each request checks only what it saw). A change that shrinks facts already past the limit (a
-- read of the flash) goes through. Nil when within it. Measured only when the facts grew, and only when their size
-- before is not known (a new session's facts, its creation time, are counted as they grow).
local function factsOver(limit)
  if factsGrowth <= 0 then return nil end
  local size = factsBefore and factsBefore + factsGrowth or factsSize()
  if size > limit then return size end
  return nil
end

-- Writes what the change left in `cache` to the hash `key`.
local function flush(key)
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
  -- unpack is bounded by Lua's stack: write in slices. Sets first: when Redis is over maxmemory a script sent by
  -- EVALSHA is refused at its first HSET, and then nothing of the change has been written (HDEL is never refused).
  for i = 1, #sets, 1000 do
    redis.call('HSET', key, unpack(sets, i, math.min(i + 999, #sets)))
  end
  for i = 1, #deletes, 1000 do
    redis.call('HDEL', key, unpack(deletes, i, math.min(i + 999, #deletes)))
  end
end
