import { test } from 'tap'
import { OptionReader, describeValue, isPlainObject, optionError } from '../../../plugins/lib/plugin/options.js'

const read = new OptionReader('fastify-resilience-test')

test('describeValue renders each kind of bad value briefly', async (t) => {
  t.equal(describeValue('x'), '"x"')
  t.equal(describeValue(-1), '-1')
  t.equal(describeValue(Number.NaN), 'NaN')
  t.equal(describeValue(null), 'null')
  t.equal(describeValue(undefined), 'undefined')
  t.equal(describeValue(10n), '10n')
  t.equal(describeValue(Symbol('s')), 'Symbol(s)')
  t.equal(describeValue(() => {}), 'a function')
  t.equal(describeValue([1]), 'an array')
  t.equal(describeValue({ a: 1 }), 'an object')
  t.equal(describeValue(true), 'true')
})

test('optionError is one sentence naming plugin, option and value', async (t) => {
  const error = optionError('fastify-resilience-breaker', 'halfOpenAfterMs', 'a positive number', -1)
  t.type(error, TypeError)
  t.equal(error.message, 'fastify-resilience-breaker: "halfOpenAfterMs" must be a positive number (got -1)')
})

test('isPlainObject accepts object literals and null-prototype objects only', async (t) => {
  t.equal(isPlainObject({}), true)
  t.equal(isPlainObject(Object.create(null)), true)
  t.equal(isPlainObject([]), false)
  t.equal(isPlainObject(new Date()), false)
  t.equal(isPlainObject(null), false)
  t.equal(isPlainObject('x'), false)
})

test('object() accepts undefined and known keys and refuses anything else', async (t) => {
  t.same(read.object('options', undefined, ['a']), {})
  t.same(read.object('options', { a: 1 }, ['a', 'b']), { a: 1 })
  t.throws(() => read.object('options', 'x', ['a']), { name: 'TypeError', message: 'fastify-resilience-test: "options" must be an object (got "x")' })
  t.throws(() => read.object('options', { c: 1 }, ['a', 'b']), { message: 'fastify-resilience-test: unknown option "c" (known options: a, b)' })
  t.throws(() => read.object('breaker.defaults', { c: 1 }, ['a']), { message: 'fastify-resilience-test: unknown option "breaker.defaults.c" (known options: a)' })
})

test('number() keeps 0 when legal, returns the default for undefined, and explains each rule', async (t) => {
  t.equal(read.number('maxRetries', undefined, 3, { min: 0, integer: true }), 3)
  t.equal(read.number('maxRetries', 0, 3, { min: 0, integer: true }), 0, '0 is not replaced by the default')
  t.equal(read.number('ratio', 0.5, 0.6, { min: 0, max: 1 }), 0.5)
  t.equal(read.number('anything', -7.5, 1), -7.5)
  t.throws(() => read.number('maxRetries', -1, 3, { min: 0, integer: true }), { message: 'fastify-resilience-test: "maxRetries" must be a non-negative integer (got -1)' })
  t.throws(() => read.number('maxRetries', 1.5, 3, { min: 0, integer: true }), { message: /"maxRetries" must be a non-negative integer \(got 1.5\)/ })
  t.throws(() => read.number('delayMs', -1, 3, { min: 0 }), { message: /"delayMs" must be a non-negative number \(got -1\)/ })
  t.throws(() => read.number('ratio', 1.5, 0.6, { min: 0, max: 1 }), { message: /"ratio" must be a number from 0 to 1 \(got 1.5\)/ })
  t.throws(() => read.number('calls', 0, 3, { min: 1, integer: true }), { message: /"calls" must be an integer >= 1 \(got 0\)/ })
  t.throws(() => read.number('size', Number.POSITIVE_INFINITY, 3), { message: /"size" must be a number \(got Infinity\)/ })
  t.throws(() => read.number('size', '3', 3), { message: /"size" must be a number \(got "3"\)/ })
  t.throws(() => read.number('size', Number.NaN, 3), { message: /"size" must be a number \(got NaN\)/ })
})

test('boolean(), string(), oneOf() and function() return values, defaults and clear refusals', async (t) => {
  t.equal(read.boolean('enabled', undefined, true), true)
  t.equal(read.boolean('enabled', false, true), false)
  t.throws(() => read.boolean('enabled', 'no', true), { message: 'fastify-resilience-test: "enabled" must be a boolean (got "no")' })

  t.equal(read.string('name', undefined, 'db'), 'db')
  t.equal(read.string('name', '', 'db'), '', 'an empty string is a value, not a missing one')
  t.throws(() => read.string('name', 1, 'db'), { message: /"name" must be a string \(got 1\)/ })
  t.throws(() => read.string('name', 'A B', 'db', { pattern: /^[a-z]+$/, description: 'lowercase letters' }), { message: /"name" must be lowercase letters \(got "A B"\)/ })

  t.equal(read.oneOf('jitter', undefined, 'decorrelated', ['decorrelated', 'full', 'none']), 'decorrelated')
  t.equal(read.oneOf('jitter', 'none', 'decorrelated', ['decorrelated', 'full', 'none']), 'none')
  t.throws(() => read.oneOf('jitter', 'some', 'decorrelated', ['decorrelated', 'full', 'none']), { message: /"jitter" must be one of "decorrelated", "full", "none" \(got "some"\)/ })

  const fallback = (): boolean => true
  const given = (): boolean => false
  t.equal(read.function('isFailure', undefined, fallback), fallback)
  t.equal(read.function('isFailure', given, fallback), given)
  t.equal(read.function('isFailure', undefined), undefined)
  t.throws(() => read.function('isFailure', 'yes'), { message: /"isFailure" must be a function \(got "yes"\)/ })
})
