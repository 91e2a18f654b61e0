--[[
smsq token bucket: one provider account's send rate, shared by every worker
process. One atomic call per operation, timed by Redis's own clock (TIME), so
workers on many hosts neither race nor disagree about the time.

KEYS[1]  the bucket, a hash (smsq.names.bucket_key(provider)):
           tokens  micro-tokens (1 token = 1e6); negative while in debt
           ts      Redis time of the last write, microseconds since the epoch
           factor  AIMD rate factor in parts per million (1e6 = full rate)
           cut     Redis time of the last penalize that cut the factor, us
         All three are integers: Lua numbers are doubles, and Redis truncates
         numbers a script returns, so nothing fractional is kept or returned.
         A missing key is a full bucket at factor 1.

KEYS[2]  the account's pause flag (smsq.names.paused_key(provider)): while it
         exists, acquire grants nothing and returns wait_ms = -1 [acquire]

ARGV[1]  mode: "acquire" | "refund" | "penalize" | "state"
ARGV[2]  rate, tokens per second at factor 1 (> 0; may be fractional)
ARGV[3]  burst, whole tokens (>= 1)
ARGV[4]  decrease: penalize multiplies the factor by this (0 < d < 1)
ARGV[5]  recovery: factor regained per second, additively (> 0)
ARGV[6]  min_factor: the factor never goes below this (0 < m <= 1)
ARGV[7]  n: tokens wanted (acquire) or given back (refund); ignored otherwise
ARGV[8]  minimum: acquire grants nothing unless this many are available
         (1 <= minimum <= n); ignored otherwise
ARGV[9]  reserve: whole tokens this caller must leave in the bucket (0 <= reserve
         < burst): the share only the OTP lane may take; acquire only
ARGV[10] hold_ms: penalize cuts the factor at most once per this long [penalize]

Every call first brings the state up to now:
  factor climbs by recovery per second, capped at 1;
  tokens += rate * (integral of factor over the elapsed time), capped at burst.
Then the mode:
  acquire   available = whole tokens in the bucket minus reserve. If available
            >= min(minimum, burst - reserve), take max(min(n, available),
            minimum) tokens. A minimum above that can never be available, so
            such a request is granted when the bucket is full and drives it
            into debt by the difference;
            later callers wait until the debt is repaid, so the long-run rate
            still holds. Otherwise take nothing and report the wait until
            min(minimum, burst) tokens are there at the current effective rate
            (an upper bound: the factor may recover meanwhile). A caller with
            a reserve sees the bucket refill the reserve first, so a caller
            without one (an OTP) always finds those tokens before it.
  refund    tokens += n, capped at burst.
  penalize  factor = max(min_factor, factor * decrease), unless the last cut
            was less than hold_ms ago: the "throttled" answers to requests
            sent before that cut (a whole second's burst of them, one per
            request) say nothing about the rate since, and cutting once per
            answer would take the rate to min_factor in one burst. As TCP
            halves its window once per round trip, not once per lost packet.
  state     nothing; the key is not written (a read-only view for operators).

Returns {granted, wait_ms, tokens, factor}: tokens granted (acquire, else 0),
milliseconds to wait (acquire when nothing was granted, else 0; -1: paused),
micro-tokens and factor ppm after the call.

Resolution: the state is floored to whole micro-tokens and ppm on every write.
Flooring never lets the rate run fast; a refill smaller than one micro-token
between two calls is lost, which matters only below ~0.1 token/s with calls
microseconds apart.

Writes after TIME need effects replication, the default since Redis 5 (and the
only mode since Redis 7), so no redis.replicate_commands() call.
]]

local UNIT = 1000000 -- micro-tokens per token, ppm per factor 1, microseconds per second

local key = KEYS[1]
local mode = ARGV[1]
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local decrease = tonumber(ARGV[4])
local recovery = tonumber(ARGV[5])
local min_factor = tonumber(ARGV[6])
local n = tonumber(ARGV[7])
local minimum = tonumber(ARGV[8])
local reserve = tonumber(ARGV[9]) or 0

local function int(x)
    -- '%.0f', not tostring: no scientific notation may land in Redis
    return string.format('%.0f', x)
end

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * UNIT + tonumber(clock[2])

local full = burst * UNIT
local min_ppm = math.floor(min_factor * UNIT + 0.5)

local tokens, factor
local saved = redis.call('HMGET', key, 'tokens', 'ts', 'factor')
if saved[1] and saved[2] and saved[3] then
    tokens = tonumber(saved[1])
    factor = math.min(UNIT, math.max(min_ppm, tonumber(saved[3])))
    -- max(0, ...): a failover to a replica whose clock is behind must not drain
    local elapsed = math.max(0, now - tonumber(saved[2]))
    -- rate is tokens/s, which is also micro-tokens/us, so refill in micro-tokens
    -- is rate * integral(factor dt) / UNIT with factor in ppm and dt in us.
    -- The factor rises linearly (recovery ppm per us) until it reaches 1.
    local climb = recovery * elapsed
    local area
    if factor + climb <= UNIT then
        area = elapsed * (factor + climb / 2)
        factor = factor + climb
    else
        local rising = (UNIT - factor) / recovery
        area = rising * (factor + UNIT) / 2 + (elapsed - rising) * UNIT
        factor = UNIT
    end
    tokens = math.min(full, tokens + rate * area / UNIT)
else
    tokens = full
    factor = UNIT
end
tokens = math.floor(tokens)
factor = math.floor(factor)

local granted, wait_ms = 0, 0
if mode == 'acquire' and KEYS[2] and redis.call('EXISTS', KEYS[2]) == 1 then
    -- paused by an operator: nothing taken, nothing written (one round trip
    -- for both questions, which the sender asks before every request)
    return {0, -1, tokens, factor}
end
if mode == 'acquire' then
    local needed = math.min(minimum, burst - reserve)
    local available = math.floor(tokens / UNIT) - reserve
    if available >= needed then
        granted = math.max(math.min(n, available), minimum)
        tokens = tokens - granted * UNIT
    else
        local per_us = rate * factor / UNIT -- micro-tokens per microsecond
        wait_ms = math.ceil(((needed + reserve) * UNIT - tokens) / per_us / 1000)
    end
elseif mode == 'refund' then
    tokens = math.min(full, tokens + n * UNIT)
elseif mode == 'penalize' then
    local hold = (tonumber(ARGV[10]) or 0) * 1000
    local cut = tonumber(redis.call('HGET', key, 'cut') or '0')
    if now - cut >= hold then
        factor = math.max(min_ppm, math.floor(factor * decrease))
        redis.call('HSET', key, 'cut', int(now))
    end
elseif mode ~= 'state' then
    return redis.error_reply('token_bucket: unknown mode ' .. tostring(mode))
end

if mode ~= 'state' then
    redis.call('HSET', key, 'tokens', int(tokens), 'ts', int(now), 'factor', int(factor))
    -- Expire only once an idle bucket is back to what a missing key means (full,
    -- factor 1): time for the factor to climb back plus time to refill at full
    -- rate (an upper bound), with a floor of 60 s and a second of margin.
    local idle_us = (UNIT - factor) / recovery + (full - tokens) / rate
    redis.call('PEXPIRE', key, int(math.max(60000, math.ceil(idle_us / 1000) + 1000)))
end

return {granted, wait_ms, tokens, factor}
