--[[
smsq provider health: one provider account's circuit breaker, shared by every
worker process. One atomic call per operation, timed by Redis's clock (TIME).

KEYS[1]  the breaker, a hash (smsq.core.names.health_key(provider)):
           state     "closed" | "open" | "half-open"; a missing key is closed
           since     Redis time the state began, milliseconds since the epoch
           opened    Redis time the outage began (kept across failed probes), ms
           streak    consecutive transport failures (closed only)
           win       start of the current 5xx window, ms
           total     answers in the window (a transport failure is not an answer)
           bad       HTTP 5xx answers without a readable vendor error in the window
           reason    why it opened (text, for operators)
KEYS[2]  the probe lease (smsq.core.names.probe_key(provider)): present while
         one worker may send the one probe; it expires after the probe interval,
         so the fleet sends at most one probe per interval.
KEYS[3]  the fleet's events (smsq.core.names.FLEET_EVENTS_KEY), a stream: each
         change of health appends {account, event = "down" | "up", reason, by =
         "breaker"}, capped at about ARGV[12] entries [record]

ARGV[1]  mode: "gate" | "peek" | "record" | "state"
ARGV[2]  failures: consecutive transport failures that open it (>= 1)
ARGV[3]  share: share of 5xx answers in the window that opens it (0 < s <= 1)
ARGV[4]  min_answers: answers the window needs before the share counts (>= 1)
ARGV[5]  window_ms: length of the 5xx window
ARGV[6]  probe_ms: one probe per this long while open
ARGV[7]  ok: readable answers (any vendor code, success or not) [record]
ARGV[8]  transport: transport failures [record]
ARGV[9]  bad: 5xx answers without a readable vendor error [record]
ARGV[10] probe: "1" when these results are the probe's [record]
ARGV[11] account: the provider account's name, for the event [record]
ARGV[12] events_kept: the events stream's approximate cap [record]

gate    closed -> {"closed", 0}. Open or half-open: takes the probe lease if free
        (SET NX PX probe_ms) and moves to half-open -> {"probe", 0}; else
        {"open", ms until the lease ends}.
peek    gate without taking anything: closed -> {"closed", 0}; open with the
        probe lease free -> {"probe", 0}; else {"open", ms until it ends}.
record  a probe's results: any readable answer closes it; otherwise it goes
        back to open (the lease stays, so the next probe waits its interval).
        Other results count only while closed: streak and window as above;
        reaching either threshold opens it and takes the probe lease, so the
        first probe comes one interval later. Returns {state, changed, reason}:
        changed is 1 when this call opened a closed breaker ("down") or a probe
        closed it ("up"), and the change was appended to KEYS[3].
state   nothing written. Returns {state, since, opened, reason}.
]]

local key, lease = KEYS[1], KEYS[2]
local mode = ARGV[1]
local failures = tonumber(ARGV[2])
local share = tonumber(ARGV[3])
local min_answers = tonumber(ARGV[4])
local window_ms = tonumber(ARGV[5])
local probe_ms = tonumber(ARGV[6])

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local function int(x) return string.format('%.0f', x) end

local state = redis.call('HGET', key, 'state') or 'closed'

if mode == 'state' then
    local f = redis.call('HMGET', key, 'since', 'opened', 'reason')
    return {state, f[1] or '', f[2] or '', f[3] or ''}
end

if mode == 'peek' then
    if state == 'closed' then return {'closed', 0} end
    local ttl = redis.call('PTTL', lease)
    if ttl < 0 then return {'probe', 0} end
    return {'open', ttl}
end

if mode == 'gate' then
    if state == 'closed' then return {'closed', 0} end
    -- half-open with the lease gone: the probe's worker died or is slow; one more
    -- probe per interval at most
    if redis.call('SET', lease, '1', 'NX', 'PX', probe_ms) then
        redis.call('HSET', key, 'state', 'half-open', 'since', int(now))
        return {'probe', 0}
    end
    local ttl = redis.call('PTTL', lease)
    if ttl < 0 then ttl = probe_ms end
    return {'open', ttl}
end

if mode ~= 'record' then
    return redis.error_reply('provider_health: unknown mode ' .. tostring(mode))
end

local ok = tonumber(ARGV[7])
local transport = tonumber(ARGV[8])
local bad = tonumber(ARGV[9])
local probe = ARGV[10] == '1'

local function event(name, reason)
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[12], '*',
        'account', ARGV[11], 'event', name, 'reason', reason, 'by', 'breaker')
end

local function open(reason)
    local opened = redis.call('HGET', key, 'opened')
    local changed = 0
    if state == 'closed' or not opened then opened = int(now) end
    if state == 'closed' then
        event('down', reason)
        changed = 1
    end
    redis.call('DEL', key)
    redis.call('HSET', key, 'state', 'open', 'since', opened, 'opened', opened, 'reason', reason)
    redis.call('SET', lease, '1', 'PX', probe_ms)
    return {'open', changed, reason}
end

if probe then
    if ok > 0 then
        local opened = tonumber(redis.call('HGET', key, 'opened'))
        redis.call('DEL', key)
        redis.call('HSET', key, 'state', 'closed', 'since', int(now))
        if state == 'closed' then return {'closed', 0, ''} end
        local reason = 'a probe was answered'
        if opened then
            reason = reason .. ' after ' .. int((now - opened) / 1000) .. ' s down'
        end
        event('up', reason)
        return {'closed', 1, reason}
    end
    if state == 'closed' then return {'closed', 0, ''} end
    return open(redis.call('HGET', key, 'reason') or 'probe failed')
end

if state ~= 'closed' then return {state, 0, ''} end

local f = redis.call('HMGET', key, 'streak', 'win', 'total', 'bad')
local streak = tonumber(f[1]) or 0
local win = tonumber(f[2]) or now
local total = tonumber(f[3]) or 0
local nbad = tonumber(f[4]) or 0
if now - win >= window_ms then win, total, nbad = now, 0, 0 end
if ok + bad > 0 then streak = transport else streak = streak + transport end
total = total + ok + bad
nbad = nbad + bad
if streak >= failures then
    return open(int(streak) .. ' consecutive transport failures')
end
if total >= min_answers and nbad >= share * total then
    return open(int(nbad) .. ' of ' .. int(total) .. ' answers were HTTP 5xx')
end
redis.call('HSET', key, 'streak', int(streak), 'win', int(win), 'total', int(total), 'bad', int(nbad))
return {'closed', 0, ''}
