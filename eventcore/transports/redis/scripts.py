"""The Lua scripts of the Redis transport: each runs atomically on the server."""

from __future__ import annotations

# The oldest entry that some group still needs: the smallest pending id of each
# group, or just after its last-delivered id when nothing is pending; the least.
# Entries below it were delivered to and acknowledged by every group.
FLOOR = """
local function older(a, b)
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
local function floor(stream)
  local best = nil
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local info = {}
    for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
    local ms, seq = string.match(info['last-delivered-id'], '(%d+)-(%d+)')
    local f = ms .. '-' .. (tonumber(seq) + 1)
    if tonumber(info['pending']) > 0 then
      f = redis.call('XPENDING', stream, info['name'])[2]
    end
    if best == nil or older(f, best) then best = f end
  end
  return best
end
local function trim(stream)
  local f = floor(stream)
  if f then redis.call('XTRIM', stream, 'MINID', '~', f) end
  return f
end
"""

# KEYS: stream [, dedup key]; ARGV: max_len (0: none), message [, dedup ms]
# -> the entry id; 0: the stream is full (make room with TRIM, then try once more);
# 1: a duplicate (the id was sent before). Short: it runs for every publish.
SEND = """
if tonumber(ARGV[1]) > 0 and redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
if #KEYS > 1 and not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[3]) then return 1 end
return redis.call('XADD', KEYS[1], '*', 'm', ARGV[2])
"""

# KEYS: stream; ARGV: max_len (0: none); trims below what every group still needs
# (exactly, when trimming whole nodes left the stream at max_len) -> the floor, or nil
TRIM = (
    FLOOR
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
local f = trim(KEYS[1])
local limit = tonumber(ARGV[1])
if f and limit > 0 and redis.call('XLEN', KEYS[1]) >= limit then
  redis.call('XTRIM', KEYS[1], 'MINID', f)
end
return f
"""
)

# KEYS: lease; ARGV: consumer, ms -> 1 if the lease is (still) the consumer's
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: stream, dead-letter stream; ARGV: group, entry id, dead max len, field, value, ...
DEAD = """
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
return redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
"""


#: every script by the name the transport calls it by
ALL = {"send": SEND, "trim": TRIM, "dead": DEAD, "renew": RENEW, "release": RELEASE}
