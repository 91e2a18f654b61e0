--[[
smsq owner heartbeat: one worker process says it is alive (worker.owners).

KEYS[1]  the owner's key (smsq.core.names.owner_key(owner)); present while alive
KEYS[2]  the registry's epoch (OWNERS_EPOCH_KEY); set here when missing
ARGV[1]  the epoch this owner last saw ("" before its first heartbeat)
ARGV[2]  the owner key's time to live, milliseconds
ARGV[3]  a fresh random epoch, used if the registry has none (Redis lost its data)

Returns the current epoch, or false when this owner was already declared dead:
its key expired within the epoch it last saw, so a sweep may have recovered its
rows. It must never come back under the same name (that would lift the fence in
on_wire.lua); the caller takes a new one.
]]
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  redis.call('SET', KEYS[2], ARGV[3])
  epoch = ARGV[3]
end
if redis.call('EXISTS', KEYS[1]) == 0 and ARGV[1] == epoch then
  return false
end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
return epoch
