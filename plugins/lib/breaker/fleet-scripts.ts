import { LuaScript } from '../redis/lua-script.js'

/**
 * The Lua scripts that are the only writers of a fleet-wide breaker's state in
 * Redis. Redis runs each one atomically, so the decisions that must be made
 * once for the whole fleet (trip, grant a trial, close) are. They are called
 * by SHA (see `LuaScript`).
 *
 * This is the state machine of `CircuitStateMachine` (circuit-state.ts) told
 * for the fleet, with the same names, and test/lib/breaker/fleet-parity.test.ts
 * drives both through the same calls. What differs, and why:
 * - calls are counted when their result is reported, not when admitted (the
 *   closed path does not talk to Redis);
 * - a window that ends clears the counts without a new generation (a new
 *   generation would have to be published to every instance, each window);
 * - it trips on failures from at least `quorum` instances (see REPORT);
 * - trials have a lease: a trial whose instance died frees its slot;
 * - open periods are drawn by the instance that opens it (the backoff is
 *   JavaScript), and `openUntil` is on the callers' clocks.
 *
 * Keys of one breaker, all with the breaker's hash tag `{name}` so that they
 * live on one Redis Cluster slot:
 * - KEYS[1] the state hash, fields as `CircuitStateMachine`'s: `state`
 *   (closed, open, half-open, isolated), `generation` (bumped on every state
 *   change), `openUntil` (open: when, in ms since the epoch), `openings`
 *   (openings in a row), `windowEndsAt` (closed: end of the counting window),
 *   `calls` and `failures` (closed: the fleet's counts in the window),
 *   `trials`, `trialSuccesses` and `trialLeaseEndsAt` (half-open: trials
 *   granted, trials that succeeded, when unsettled trials are taken to be
 *   lost), and `epoch` (made with the hash: generations of another epoch are
 *   not comparable);
 * - KEYS[2] the instances that reported in the window: instance -> failures;
 * - KEYS[3] the instances holding the breaker isolated: instance -> handles.
 *
 * Every script takes ARGV[1] the breaker's name, ARGV[2] the channel, ARGV[3]
 * the caller's clock (ms since the epoch), publishes every state change as
 * JSON `{ name, state, generation, openUntil, openings, epoch }`, or
 * `{ name, generation, epoch, kind: 'slot' }` when a trial slot is freed, and
 * returns the state after it ran:
 * `{ state, generation, openUntil, openings, answer, epoch }`.
 */
const PRELUDE = `
local key, reporters, isolations = KEYS[1], KEYS[2], KEYS[3]
local name, channel, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local FIELDS = { 'state', 'generation', 'openUntil', 'openings', 'windowEndsAt', 'calls', 'failures', 'trials', 'trialSuccesses', 'trialLeaseEndsAt', 'epoch' }
local h = redis.call('HMGET', key, unpack(FIELDS))
local s = { state = h[1] or 'closed', epoch = h[11] }
for i = 2, 10 do s[FIELDS[i]] = tonumber(h[i] or '0') end
-- A new epoch whenever the hash is new (first use, or Redis lost its data): generations start over.
if not s.epoch then
  local time = redis.call('TIME')
  s.epoch = time[1] .. '.' .. time[2]
end
local changed = false
local function clear ()
  s.windowEndsAt, s.calls, s.failures, s.trials, s.trialSuccesses, s.trialLeaseEndsAt = 0, 0, 0, 0, 0, 0
  redis.call('DEL', reporters)
end
local function move (state)
  s.state = state
  s.generation = s.generation + 1
  clear()
  changed = true
end
local function open (ms)
  s.openUntil = now + ms
  move('open')
end
-- What time alone changes: a closed window that ended, an open period that ended.
if s.state == 'closed' and s.windowEndsAt ~= 0 and now >= s.windowEndsAt then clear() end
if s.state == 'open' and now >= s.openUntil then move('half-open') end
local function finish (answer)
  local fields = {}
  for _, field in ipairs(FIELDS) do
    fields[#fields + 1] = field
    fields[#fields + 1] = s[field]
  end
  redis.call('HSET', key, unpack(fields))
  if changed then
    redis.call('PUBLISH', channel, cjson.encode({ name = name, state = s.state, generation = s.generation,
      openUntil = s.openUntil, openings = s.openings, epoch = s.epoch }))
  end
  return { s.state, s.generation, s.openUntil, s.openings, answer, s.epoch }
end
`

/** Reads the state (and applies what time changed). */
export const READ = new LuaScript(`${PRELUDE}
return finish(0)
`)

/**
 * Adds an instance's counts of the current closed generation to the fleet's
 * window and trips the breaker when the fleet's ratio holds and failures came
 * from at least `quorum` instances. The caller sends the quorum it applies,
 * `min(quorum, live instances)` (see `Presence`): a lone instance trips the
 * fleet by itself, one instance of several never does. ARGV: 4 generation,
 * 5 instance, 6 calls, 7 failures, 8 minimumCalls, 9 failureRatio,
 * 10 quorum, 11 windowMs, 12 open period (ms). Answers 1 when the counts
 * were taken.
 */
export const REPORT = new LuaScript(`${PRELUDE}
if s.state ~= 'closed' or tonumber(ARGV[4]) ~= s.generation then return finish(0) end
local failures = tonumber(ARGV[7])
if s.windowEndsAt == 0 then s.windowEndsAt = now + tonumber(ARGV[11]) end
s.calls = s.calls + tonumber(ARGV[6])
s.failures = s.failures + failures
redis.call('HINCRBY', reporters, ARGV[5], failures)
if failures > 0 and s.calls >= tonumber(ARGV[8]) and s.failures / s.calls >= tonumber(ARGV[9]) then
  -- Instances with failures in this window.
  local failing = 0
  for _, count in ipairs(redis.call('HVALS', reporters)) do if tonumber(count) > 0 then failing = failing + 1 end end
  if failing >= tonumber(ARGV[10]) then
    s.openings = 1
    open(tonumber(ARGV[12]))
  end
end
return finish(1)
`)

/**
 * Grants a half-open trial if one of the fleet's `halfOpenMaxCalls` is free.
 * Trials granted and not settled within the lease (their instance died or
 * lost Redis) are taken as lost and their slots freed. ARGV: 4 halfOpenMaxCalls,
 * 5 lease (ms). Answers 1 when granted.
 */
export const TRIAL = new LuaScript(`${PRELUDE}
if s.state ~= 'half-open' then return finish(0) end
local max = tonumber(ARGV[4])
if s.trials >= max and s.trialLeaseEndsAt ~= 0 and now >= s.trialLeaseEndsAt then s.trials = s.trialSuccesses end
if s.trials >= max then return finish(0) end
s.trials = s.trials + 1
s.trialLeaseEndsAt = now + tonumber(ARGV[5])
return finish(1)
`)

/**
 * Settles a trial granted in generation ARGV[4]: ARGV[5] `success`, `failure`
 * or `neutral`; ARGV[6] halfOpenMaxCalls; ARGV[7] the open period if it fails
 * (ms). A trial of an older generation changes nothing.
 */
export const SETTLE = new LuaScript(`${PRELUDE}
if s.state ~= 'half-open' or tonumber(ARGV[4]) ~= s.generation then return finish(0) end
local outcome = ARGV[5]
if outcome == 'failure' then
  s.openings = s.openings + 1
  open(tonumber(ARGV[7]))
elseif outcome == 'success' then
  s.trialSuccesses = s.trialSuccesses + 1
  if s.trialSuccesses >= tonumber(ARGV[6]) then
    s.openings = 0
    move('closed')
  end
elseif s.trials > 0 then
  s.trials = s.trials - 1
  redis.call('PUBLISH', channel, cjson.encode({ name = name, generation = s.generation, epoch = s.epoch, kind = 'slot' }))
end
return finish(1)
`)

/**
 * Sets how many isolation handles instance ARGV[4] holds (ARGV[5]): the
 * breaker is isolated while any instance holds one, and closes when the last
 * is released.
 */
export const ISOLATE = new LuaScript(`${PRELUDE}
if tonumber(ARGV[5]) > 0 then redis.call('HSET', isolations, ARGV[4], ARGV[5]) else redis.call('HDEL', isolations, ARGV[4]) end
local held = redis.call('HLEN', isolations) > 0
if held and s.state ~= 'isolated' then move('isolated') end
if not held and s.state == 'isolated' then
  s.openings = 0
  move('closed')
end
return finish(1)
`)

/**
 * Opens a closed breaker for ARGV[4] ms: an instance that opened its own
 * breaker while cut off from Redis tells the fleet on reconnecting.
 */
export const OPEN = new LuaScript(`${PRELUDE}
if s.state ~= 'closed' then return finish(0) end
s.openings = 1
open(tonumber(ARGV[4]))
return finish(1)
`)
