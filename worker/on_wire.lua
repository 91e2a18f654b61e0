--[[
smsq on-wire mark: the ids of one request, recorded before it goes out
(worker.owners). A sweep treats a dead owner's marked rows as possibly sent
('unknown') and its unmarked rows as never sent (back to 'queued').

KEYS[1]  the owner's key (smsq.core.names.owner_key(owner))
KEYS[2]  the registry's epoch (OWNERS_EPOCH_KEY)
KEYS[3]  the claim's set of ids on the wire (on_wire_key(token))
ARGV[1]  the epoch the claim was made in
ARGV[2]  the set's time to live, milliseconds
ARGV[3..] message ids

Returns 1 when marked (the request may go out), 0 when refused: the owner's key
is gone within the claim's epoch, so a sweep may already have given these rows
to another worker, and sending them here could send them twice. In another
epoch (Redis lost its data since the claim) the sweep does not judge owners of
the claim, so marking is allowed.
]]
if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('GET', KEYS[2]) == ARGV[1] then
  return 0
end
for i = 3, #ARGV, 1000 do
  redis.call('SADD', KEYS[3], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('PEXPIRE', KEYS[3], ARGV[2])
return 1
