import { test } from 'tap'
import { LimitMoves } from '../../../plugins/lib/shedding/limit-moves.js'

test('a move of the limit is reported when it halves or doubles within the period, at most once per period', async (t) => {
  let nowMs = 0
  const moves = new LimitMoves(20, 10_000, () => nowMs)
  t.equal(moves.observe(30), undefined, '1.5x is no news')
  nowMs = 2000
  t.same(moves.observe(40), { from: 20, to: 40, withinMs: 2000 }, 'doubled within 2 s')
  nowMs = 3000
  t.equal(moves.observe(15), undefined, 'halved again, but logged 1 s ago')
  nowMs = 12_500
  t.equal(moves.observe(14), undefined, 'a new period starts from the last limit (15)')
  nowMs = 13_000
  t.same(moves.observe(7), { from: 15, to: 7, withinMs: 500 })
  nowMs = 60_000
  t.equal(moves.observe(10), undefined, 'slow moves over a long time are no news')
})
