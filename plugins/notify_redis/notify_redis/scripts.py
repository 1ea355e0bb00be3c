"""The Lua scripts of the Redis backend: each one runs atomically on the server.

Publishing and enqueueing are idempotent (a call the client retries after a
lost reply returns the ids of the first instead of adding twice); reserving
moves due delayed jobs, takes over lapsed leases and reads new jobs in one
step; ack, retry, release and dead-letter act only while the caller's receipt
matches. Each script touches the keys of one stream or one queue
(:mod:`notify_redis.keys`), never two.
"""

from __future__ import annotations

__all__ = [
    "ACK",
    "ACK_MANY",
    "DEAD",
    "ENQUEUE",
    "PUBLISH",
    "READ",
    "RELEASE",
    "RESERVE",
    "RETRY",
]


# KEYS: stream, its meta hash, its publishers hash
# ARGV: maxlen, min id ('' for none), publisher, token, payloads...
# Trims exactly, and remembers the newest id trimmed so readers behind it get a reset
# (Redis 7.0's max-deleted-entry-id counts XDEL only, not trimming).
# Idempotent: a call whose reply was lost (the server went down after running it) is
# sent again by the client's retry with the same token, and gets the same ids back
# instead of adding the messages twice.
def _once(publishers: str, publisher: str, token: str) -> str:
    """Lua that returns the ids of a call already made with this token (a retry), if any."""
    return f"""
local done = redis.call('HGET', {publishers}, {publisher})
if done then
  local sep = string.find(done, ' ', 1, true)
  if string.sub(done, 1, sep - 1) == {token} then
    local ids = {{}}
    for id in string.gmatch(string.sub(done, sep + 1), '[^,]+') do ids[#ids + 1] = id end
    return ids
  end
end
"""


def _remember(publishers: str, publisher: str, token: str) -> str:
    return f"""
redis.call('HSET', {publishers}, {publisher}, {token} .. ' ' .. table.concat(ids, ','))
redis.call('EXPIRE', {publishers}, 300)
"""


PUBLISH = (
    _once("KEYS[3]", "ARGV[3]", "ARGV[4]")
    + """
local ids = {}
for i = 5, #ARGV do ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', 'd', ARGV[i]) end
"""
    + _remember("KEYS[3]", "ARGV[3]", "ARGV[4]")
    + """
local trimmed = false
local excess = redis.call('XLEN', KEYS[1]) - tonumber(ARGV[1])
if excess > 0 then
  local old = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)
  trimmed = old[#old][1]
  redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[1])
end
if ARGV[2] ~= '' then
  local old = redis.call('XREVRANGE', KEYS[1], '(' .. ARGV[2], '-', 'COUNT', 1)
  if #old > 0 then
    trimmed = old[1][1]
    redis.call('XTRIM', KEYS[1], 'MINID', ARGV[2])
  end
end
if trimmed then redis.call('HSET', KEYS[2], 'trimmed', trimmed) end
return ids
"""
)

# KEYS: stream, its meta hash; ARGV: after ('' for the start), count ('' for all)
READ = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {false, false, {}} end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local maxdel, last = redis.call('HGET', KEYS[2], 'trimmed') or '0-0', '0-0'
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then last = info[i + 1] end
end
local start = '-'
if ARGV[1] ~= '' then start = '(' .. ARGV[1] end
local entries
if ARGV[2] == '' then
  entries = redis.call('XRANGE', KEYS[1], start, '+')
else
  entries = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', ARGV[2])
end
return {maxdel, last, entries}
"""

# KEYS: queue stream, its publishers hash; ARGV: publisher, token, payloads...
# Idempotent like publishing: a retried call after a lost reply adds no second copy.
ENQUEUE = (
    _once("KEYS[2]", "ARGV[1]", "ARGV[2]")
    + """
local ids = {}
for i = 3, #ARGV do ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', 'p', ARGV[i], 'a', 0) end
"""
    + _remember("KEYS[2]", "ARGV[1]", "ARGV[2]")
    + "return ids\n"
)

# KEYS: stream, leases, jobs, delayed, delayed-data
# ARGV: group, consumer, visibility ms, receipt, how many
# Returns {n, wait ms, newest id, id1, payload1, attempts1, error1, ...}.
RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function field(fields, name)
  for i = 1, #fields, 2 do if fields[i] == name then return fields[i + 1] end end
  return false
end
local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, 100)
for _, token in ipairs(due) do
  local p = redis.call('HGET', KEYS[5], token .. ':p')
  local a = redis.call('HGET', KEYS[5], token .. ':a') or '0'
  local e = redis.call('HGET', KEYS[5], token .. ':e')
  if p then
    if e then redis.call('XADD', KEYS[1], '*', 'p', p, 'a', a, 'e', e)
    else redis.call('XADD', KEYS[1], '*', 'p', p, 'a', a) end
  end
  redis.call('ZREM', KEYS[4], token)
  redis.call('HDEL', KEYS[5], token .. ':p', token .. ':a', token .. ':e')
end
local out = {}
local want = tonumber(ARGV[5])
local deadline = now + tonumber(ARGV[3])
-- Leases and receipts are written once for the whole batch, below.
local leases, receipts = {}, {}
local function lease(id, p, a, e)
  leases[#leases + 1] = deadline
  leases[#leases + 1] = id
  receipts[#receipts + 1] = 'r:' .. id
  receipts[#receipts + 1] = ARGV[4]
  out[#out + 1] = id
  out[#out + 1] = p
  out[#out + 1] = a
  out[#out + 1] = e
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, want)
for _, old in ipairs(expired) do
  local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, old)
  if #claimed > 0 and claimed[1] then
    local id = claimed[1][1]
    local a = redis.call('HINCRBY', KEYS[3], 'a:' .. id, 1)
    local e = redis.call('HGET', KEYS[3], 'e:' .. id) or field(claimed[1][2], 'e')
    lease(id, field(claimed[1][2], 'p'), a, e)
  else
    redis.call('ZREM', KEYS[2], old)
    redis.call('HDEL', KEYS[3], 'a:' .. old, 'r:' .. old, 'e:' .. old)
  end
end
local room = want - #out / 4
if room > 0 then
  local got = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', room, 'STREAMS', KEYS[1], '>')
  if got and #got > 0 then
    for _, entry in ipairs(got[1][2]) do
      local id = entry[1]
      local a = tonumber(field(entry[2], 'a') or '0') + 1
      local e = field(entry[2], 'e')
      receipts[#receipts + 1] = 'a:' .. id
      receipts[#receipts + 1] = a
      if e then
        receipts[#receipts + 1] = 'e:' .. id
        receipts[#receipts + 1] = e
      end
      lease(id, field(entry[2], 'p'), a, e)
    end
  end
end
if #leases > 0 then
  redis.call('ZADD', KEYS[2], unpack(leases))
  redis.call('HSET', KEYS[3], unpack(receipts))
end
local wait = -1
local last = '0-0'
if #out == 0 then
  local nd = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
  if #nd > 0 then wait = tonumber(nd[2]) - now end
  local nl = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  if #nl > 0 and (wait < 0 or tonumber(nl[2]) - now < wait) then wait = tonumber(nl[2]) - now end
  local tail = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  if #tail > 0 then last = tail[1][1] end
end
return {#out / 4, wait, last, unpack(out)}
"""

# Shared head of ack / retry / dead-letter: the caller must still hold the job.
# KEYS: stream, leases, jobs, (delayed, delayed-data | dead)
# ARGV: group, id, receipt, ...
_OWNED = """
local id = ARGV[2]
if redis.call('HGET', KEYS[3], 'r:' .. id) ~= ARGV[3] then return 0 end
local entry = redis.call('XRANGE', KEYS[1], id, id)
local p = false
if #entry > 0 then
  local fields = entry[1][2]
  for i = 1, #fields, 2 do if fields[i] == 'p' then p = fields[i + 1] end end
end
local a = redis.call('HGET', KEYS[3], 'a:' .. id) or '1'
redis.call('XACK', KEYS[1], ARGV[1], id)
redis.call('XDEL', KEYS[1], id)
redis.call('ZREM', KEYS[2], id)
redis.call('HDEL', KEYS[3], 'a:' .. id, 'r:' .. id, 'e:' .. id)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: stream, leases, jobs; ARGV: group, id, receipt. The shared head without what only
# the others need (the payload, the attempts, the time).
ACK = """
local id = ARGV[2]
if redis.call('HGET', KEYS[3], 'r:' .. id) ~= ARGV[3] then return 0 end
redis.call('XACK', KEYS[1], ARGV[1], id)
redis.call('XDEL', KEYS[1], id)
redis.call('ZREM', KEYS[2], id)
redis.call('HDEL', KEYS[3], 'a:' .. id, 'r:' .. id, 'e:' .. id)
return 1
"""

# KEYS: stream, leases, jobs; ARGV: group, then id, receipt pairs. Returns how many were acked.
ACK_MANY = """
local ids, fields = {}, {}
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[3], 'r:' .. id) == ARGV[i + 1] then
    ids[#ids + 1] = id
    fields[#fields + 1] = 'a:' .. id
    fields[#fields + 1] = 'r:' .. id
    fields[#fields + 1] = 'e:' .. id
  end
end
if #ids > 0 then
  redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
  redis.call('XDEL', KEYS[1], unpack(ids))
  redis.call('ZREM', KEYS[2], unpack(ids))
  redis.call('HDEL', KEYS[3], unpack(fields))
end
return #ids
"""

# ARGV[4]: delay ms, ARGV[5]: error
RETRY = (
    _OWNED
    + """
if not p then return 1 end
if tonumber(ARGV[4]) <= 0 then
  redis.call('XADD', KEYS[1], '*', 'p', p, 'a', a, 'e', ARGV[5])
else
  redis.call('ZADD', KEYS[4], now + tonumber(ARGV[4]), id)
  redis.call('HSET', KEYS[5], id .. ':p', p, id .. ':a', a, id .. ':e', ARGV[5])
end
return 1
"""
)

# KEYS[4]: dead stream; ARGV[4]: error, ARGV[5]: queue, ARGV[6]: the tries to record
DEAD = (
    _OWNED
    + """
if p then
  redis.call('XADD', KEYS[4], '*', 'p', p, 'a', ARGV[6], 'e', ARGV[4], 't', now, 'q', ARGV[5])
end
return 1
"""
)

# Back on the stream at once with the attempt this reservation counted taken back, and
# the last error kept (read before the shared head forgets it).
RELEASE = (
    "local e = redis.call('HGET', KEYS[3], 'e:' .. ARGV[2])\n"
    + _OWNED
    + """
if not p then return 1 end
local left = math.max(tonumber(a) - 1, 0)
if e then redis.call('XADD', KEYS[1], '*', 'p', p, 'a', left, 'e', e)
else redis.call('XADD', KEYS[1], '*', 'p', p, 'a', left) end
return 1
"""
)
