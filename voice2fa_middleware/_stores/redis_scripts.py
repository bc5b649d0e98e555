"""The Lua scripts of ``RedisStore``: each operation that must be atomic runs as one script.

Every key a script touches is passed in ``KEYS`` or, for a user's live challenge, read from
the user's pointer: both share the user's hash tag, so each script runs on one node of a
Redis Cluster.
"""

# KEYS[1] challenge hash, KEYS[2] the user's failure counter; ARGV: max attempts, lockout
# limit, window (ms). Counts one attempt and one failure, or refuses: {counted, failures,
# ms locked, fields}.
RESERVE = """
local failures = tonumber(redis.call('GET', KEYS[2]) or '0')
if failures >= tonumber(ARGV[2]) then
  local ttl = redis.call('PTTL', KEYS[2])
  if ttl < 0 then ttl = tonumber(ARGV[3]) end
  return {0, failures, ttl}
end
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, failures, 0} end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
if attempts >= tonumber(ARGV[1]) then return {0, failures, 0} end
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
failures = redis.call('INCR', KEYS[2])
if failures == 1 or redis.call('PTTL', KEYS[2]) < 0 then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
return {1, failures, 0, redis.call('HGETALL', KEYS[1])}
"""

# KEYS[1] challenge; ARGV: code_mac, code, nonce, now, cooldown, max_calls.
BEGIN_CALL = """
if redis.call('EXISTS', KEYS[1]) == 0 then return '-1' end
local calls = tonumber(redis.call('HGET', KEYS[1], 'calls') or '0')
local now = tonumber(ARGV[4])
if calls >= tonumber(ARGV[6]) then
  local left = tonumber(redis.call('HGET', KEYS[1], 'expires_at')) - now
  if left < 1 then left = 1 end
  return tostring(left)
end
local wait = tonumber(redis.call('HGET', KEYS[1], 'last_call_at') or '0') + tonumber(ARGV[5]) - now
if calls > 0 and wait > 0 then return tostring(wait) end
redis.call('HSET', KEYS[1], 'code_mac', ARGV[1], 'code', ARGV[2], 'call_nonce', ARGV[3],
  'calls', calls + 1, 'last_call_at', ARGV[4], 'call_sid', '', 'call_status', 'queued')
return '0'
"""

# KEYS[1] challenge; ARGV: nonce, call_sid, status, drop_code, each status's rank (JSON).
# The status only moves forward: one that ranks below the recorded one changes nothing.
UPDATE_CALL = """
if ARGV[1] == '' or redis.call('HGET', KEYS[1], 'call_nonce') ~= ARGV[1] then return false end
if ARGV[2] ~= '' and (redis.call('HGET', KEYS[1], 'call_sid') or '') == '' then
  redis.call('HSET', KEYS[1], 'call_sid', ARGV[2])
end
if ARGV[3] ~= '' then
  local ranks = cjson.decode(ARGV[5])
  local current = redis.call('HGET', KEYS[1], 'call_status') or ''
  if (ranks[ARGV[3]] or 0) >= (ranks[current] or 0) then redis.call('HSET', KEYS[1], 'call_status', ARGV[3]) end
end
if ARGV[4] == '1' then redis.call('HSET', KEYS[1], 'code', '') end
return redis.call('HGETALL', KEYS[1])
"""

# KEYS[1] challenge; ARGV[1] the code MAC it must still hold. Compare-and-delete.
CONSUME = """
if ARGV[1] == '' or redis.call('HGET', KEYS[1], 'code_mac') ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""

# KEYS[1] challenge; ARGV[1] nonce, then field/value pairs to put back.
ROLLBACK = """
if redis.call('HGET', KEYS[1], 'call_nonce') ~= ARGV[1] then return 0 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""

# KEYS: counters; ARGV: limit, window (ms) pairs in KEYS order. All or nothing.
TAKE = """
local wait = 0
for i, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if count >= tonumber(ARGV[2 * i - 1]) then
    local ttl = redis.call('PTTL', key)
    if ttl > wait then wait = ttl end
    if ttl < 0 then wait = math.max(wait, tonumber(ARGV[2 * i])) end
  end
end
if wait > 0 then return wait end
for i, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 then redis.call('PEXPIRE', key, ARGV[2 * i]) end
end
return 0
"""

# KEYS[1] counter; ARGV[1] window (ms), ARGV[2] "1" to start the window again (sliding).
# Returns {count, ms left}.
HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 or ARGV[2] == '1' or redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {count, redis.call('PTTL', KEYS[1])}
"""

# KEYS[1] the time the next slot is free (Unix ms); ARGV: now (ms), interval (ms), the longest
# wait (ms) the caller accepts. Takes the next free slot (and moves the mark one interval on)
# when it comes within that wait; returns the ms until the slot (over the wait: nothing taken).
RESERVE_SLOT = """
local now = tonumber(ARGV[1])
local slot = tonumber(redis.call('GET', KEYS[1]) or '0')
if slot < now then slot = now end
local wait = slot - now
if wait > tonumber(ARGV[3]) then return wait end
redis.call('SET', KEYS[1], tostring(slot + tonumber(ARGV[2])), 'PX', wait + tonumber(ARGV[2]) + 1000)
return wait
"""

# KEYS[1] counter. Returns {count, ms left} ({0, 0} when absent).
PEEK = """
local count = redis.call('GET', KEYS[1])
if not count then return {0, 0} end
return {tonumber(count), redis.call('PTTL', KEYS[1])}
"""

# KEYS[1] challenge, KEYS[2] the user's pointer; ARGV[1] expiry (Unix ms), then field/value
# pairs. Saves the challenge and makes it the user's live one.
CREATE = """
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], KEYS[1], 'PXAT', ARGV[1])
return 1
"""

# KEYS[1] the user's pointer. The fields of the live challenge it names, or nil.
LIVE = """
local key = redis.call('GET', KEYS[1])
if not key then return false end
local fields = redis.call('HGETALL', key)
if #fields == 0 then return false end
return fields
"""

# Starting a challenge, as one step (see Store.start).
# KEYS: 1 the user's pointer, 2 failures, 3 known-phone counter, 4 the new challenge, then
# nk buckets for a known phone and nn for a new one. ARGV: 1 binding, 2 lockout limit,
# 3 lockout window (ms), 4 expiry (Unix ms), 5 nk, 6 nn, 7 the buckets' limit/window (ms)
# pairs in KEYS order and 8 the challenge's fields, both as JSON: two arguments instead of
# dozens, as each argument costs the client time to encode.
# Returns {1, fields} (live challenge), {2, ms locked}, {3, ms to wait, known} or {0, known}.
START = """
local live = redis.call('GET', KEYS[1])
if live then
  local fields = redis.call('HGETALL', live)
  if #fields > 0 then
    if redis.call('HGET', live, 'binding') == ARGV[1] then return {1, fields} end
    redis.call('DEL', live)
  end
end
local failures = tonumber(redis.call('GET', KEYS[2]) or '0')
if failures >= tonumber(ARGV[2]) then
  local ttl = redis.call('PTTL', KEYS[2])
  if ttl < 0 then ttl = tonumber(ARGV[3]) end
  return {2, ttl}
end
local nk, nn = tonumber(ARGV[5]), tonumber(ARGV[6])
local limits = cjson.decode(ARGV[7])
local known = 0
if tonumber(redis.call('GET', KEYS[3]) or '0') > 0 then known = 1 end
local k0, a0, n = 5, 1, nk
if known == 0 then k0, a0, n = 5 + nk, 1 + 2 * nk, nn end
local wait = 0
for i = 0, n - 1 do
  local key = KEYS[k0 + i]
  if tonumber(redis.call('GET', key) or '0') >= limits[a0 + 2 * i] then
    local ttl = redis.call('PTTL', key)
    if ttl < 0 then ttl = limits[a0 + 2 * i + 1] end
    if ttl > wait then wait = ttl end
  end
end
if wait > 0 then return {3, wait, known} end
for i = 0, n - 1 do
  if redis.call('INCR', KEYS[k0 + i]) == 1 then redis.call('PEXPIRE', KEYS[k0 + i], limits[a0 + 2 * i + 1]) end
end
local flat = {}
for name, value in pairs(cjson.decode(ARGV[8])) do
  flat[#flat + 1] = name
  flat[#flat + 1] = value
end
redis.call('HSET', KEYS[4], unpack(flat))
redis.call('PEXPIREAT', KEYS[4], ARGV[4])
redis.call('SET', KEYS[1], KEYS[4], 'PXAT', ARGV[4])
return {0, known}
"""

# KEYS: counters to give back one hit each (a step refused on another node, a call the
# provider did not accept).
UNTAKE = """
for i, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') > 0 then redis.call('DECR', key) end
end
return 0
"""

# KEYS[1] the user's pointer, KEYS[2] a challenge just started, then its user's counters to
# give back: undo START when a budget on another node refused the call.
ABANDON = """
redis.call('DEL', KEYS[2])
if redis.call('GET', KEYS[1]) == KEYS[2] then redis.call('DEL', KEYS[1]) end
for i = 3, #KEYS do
  if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then redis.call('DECR', KEYS[i]) end
end
return 0
"""
