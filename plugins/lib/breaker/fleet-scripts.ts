/**
 * The Lua scripts that are the only writers of a fleet-wide breaker's state in
 * Redis. Redis runs each one atomically, so the decisions that must be made
 * once for the whole fleet (trip, grant a trial, close) are.
 *
 * Keys of one breaker (one hash tag, so they live on one Redis Cluster slot):
 * - KEYS[1] the state hash: `state` (closed, open, half-open, isolated), `gen`
 *   (bumped on every state change), `till` (open: when, in ms since the epoch),
 *   `op` (openings in a row), `wend` (closed: end of the counting window),
 *   `calls` and `fails` (closed: the fleet's counts in the window), `trials`,
 *   `tsucc` and `tlease` (half-open: trials granted, trials that succeeded,
 *   and when unsettled trials are taken to be lost), `epoch` (made when the
 *   hash is made: generations of another epoch are not comparable);
 * - KEYS[2] the instances that reported in the window: instance -> failures;
 * - KEYS[3] the instances holding the breaker isolated: instance -> handles.
 *
 * Every script takes ARGV[1] the breaker's name, ARGV[2] the channel, ARGV[3]
 * the caller's clock (ms since the epoch), publishes every state change as
 * JSON `{ n, s, g, t, o, e }` (name, state, generation, till, openings,
 * epoch), or `{ n, g, e, k: 'slot' }` when a trial slot is freed, and returns
 * the state after it ran: `{ state, gen, till, op, answer, epoch }`.
 */

const PRELUDE = `
local key, reporters, isolations = KEYS[1], KEYS[2], KEYS[3]
local name, channel, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local h = redis.call('HMGET', key, 'state', 'gen', 'till', 'op', 'wend', 'calls', 'fails', 'trials', 'tsucc', 'tlease', 'epoch')
local s = { state = h[1] or 'closed', gen = tonumber(h[2] or '0'), till = tonumber(h[3] or '0'), op = tonumber(h[4] or '0'),
  wend = tonumber(h[5] or '0'), calls = tonumber(h[6] or '0'), fails = tonumber(h[7] or '0'),
  trials = tonumber(h[8] or '0'), tsucc = tonumber(h[9] or '0'), tlease = tonumber(h[10] or '0'), epoch = h[11] }
-- A new epoch whenever the hash is new (first use, or Redis lost its data): generations start over.
if not s.epoch then
  local time = redis.call('TIME')
  s.epoch = time[1] .. '.' .. time[2]
end
local changed = false
local function clear ()
  s.wend, s.calls, s.fails, s.trials, s.tsucc, s.tlease = 0, 0, 0, 0, 0, 0
  redis.call('DEL', reporters)
end
local function move (state)
  s.state = state
  s.gen = s.gen + 1
  clear()
  changed = true
end
local function open (ms)
  s.till = now + ms
  move('open')
end
-- What time alone changes: a closed window that ended, an open period that ended.
if s.state == 'closed' and s.wend ~= 0 and now >= s.wend then clear() end
if s.state == 'open' and now >= s.till then move('half-open') end
local function finish (answer)
  redis.call('HSET', key, 'state', s.state, 'gen', s.gen, 'till', s.till, 'op', s.op, 'wend', s.wend,
    'calls', s.calls, 'fails', s.fails, 'trials', s.trials, 'tsucc', s.tsucc, 'tlease', s.tlease, 'epoch', s.epoch)
  if changed then redis.call('PUBLISH', channel, cjson.encode({ n = name, s = s.state, g = s.gen, t = s.till, o = s.op, e = s.epoch })) end
  return { s.state, s.gen, s.till, s.op, answer, s.epoch }
end
`

/** Reads the state (and applies what time changed). */
export const READ = `${PRELUDE}
return finish(0)
`

/**
 * Adds an instance's counts of the current closed generation to the fleet's
 * window and trips the breaker when the fleet's ratio holds and failures came
 * from at least `quorum` instances (from 1 when only one instance reported in
 * the window). ARGV: 4 generation, 5 instance, 6 calls, 7 failures,
 * 8 minimumCalls, 9 failureRatio, 10 quorum, 11 windowMs, 12 open period (ms).
 * Answers 1 when the counts were taken.
 */
export const REPORT = `${PRELUDE}
if s.state ~= 'closed' or tonumber(ARGV[4]) ~= s.gen then return finish(0) end
local failures = tonumber(ARGV[7])
if s.wend == 0 then s.wend = now + tonumber(ARGV[11]) end
s.calls = s.calls + tonumber(ARGV[6])
s.fails = s.fails + failures
redis.call('HINCRBY', reporters, ARGV[5], failures)
if failures > 0 and s.calls >= tonumber(ARGV[8]) and s.fails / s.calls >= tonumber(ARGV[9]) then
  local failing = 0
  local counts = redis.call('HVALS', reporters)
  for _, count in ipairs(counts) do if tonumber(count) > 0 then failing = failing + 1 end end
  local quorum = tonumber(ARGV[10])
  if #counts == 1 then quorum = 1 end
  if failing >= quorum then
    s.op = 1
    open(tonumber(ARGV[12]))
  end
end
return finish(1)
`

/**
 * Grants a half-open trial if one of the fleet's `halfOpenMaxCalls` is free.
 * Trials granted and not settled within the lease (their instance died or
 * lost Redis) are taken as lost and their slots freed. ARGV: 4 halfOpenMaxCalls,
 * 5 lease (ms). Answers 1 when granted.
 */
export const TRIAL = `${PRELUDE}
if s.state ~= 'half-open' then return finish(0) end
if s.trials >= tonumber(ARGV[4]) and s.tlease ~= 0 and now >= s.tlease then s.trials = s.tsucc end
if s.trials >= tonumber(ARGV[4]) then return finish(0) end
s.trials = s.trials + 1
s.tlease = now + tonumber(ARGV[5])
return finish(1)
`

/**
 * Settles a trial granted in generation ARGV[4]: ARGV[5] `success`, `failure`
 * or `neutral`; ARGV[6] halfOpenMaxCalls; ARGV[7] the open period if it fails
 * (ms). A trial of an older generation changes nothing.
 */
export const SETTLE = `${PRELUDE}
if s.state ~= 'half-open' or tonumber(ARGV[4]) ~= s.gen then return finish(0) end
local outcome = ARGV[5]
if outcome == 'failure' then
  s.op = s.op + 1
  open(tonumber(ARGV[7]))
elseif outcome == 'success' then
  s.tsucc = s.tsucc + 1
  if s.tsucc >= tonumber(ARGV[6]) then
    s.op = 0
    move('closed')
  end
elseif s.trials > 0 then
  s.trials = s.trials - 1
  redis.call('PUBLISH', channel, cjson.encode({ n = name, g = s.gen, e = s.epoch, k = 'slot' }))
end
return finish(1)
`

/**
 * Sets how many isolation handles instance ARGV[4] holds (ARGV[5]): the
 * breaker is isolated while any instance holds one, and closes when the last
 * is released.
 */
export const ISOLATE = `${PRELUDE}
if tonumber(ARGV[5]) > 0 then redis.call('HSET', isolations, ARGV[4], ARGV[5]) else redis.call('HDEL', isolations, ARGV[4]) end
local held = redis.call('HLEN', isolations) > 0
if held and s.state ~= 'isolated' then move('isolated') end
if not held and s.state == 'isolated' then
  s.op = 0
  move('closed')
end
return finish(1)
`

/**
 * Opens a closed breaker for ARGV[4] ms: an instance that opened its own
 * breaker while cut off from Redis tells the fleet on reconnecting.
 */
export const OPEN = `${PRELUDE}
if s.state ~= 'closed' then return finish(0) end
s.op = 1
open(tonumber(ARGV[4]))
return finish(1)
`
