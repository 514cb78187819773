/**
 * Numbers in paths and query strings, as plain decimal digits. The app turns
 * Ajv's type coercion off (bodies must not turn `true` into 1), so these are
 * strings with a pattern; even with coercion a pattern is safer, since Ajv
 * takes "Infinity", "1e3", "0x10" and " 1" for integers.
 */

/** 1 to 2 147 483 647: what PostgreSQL's `integer` holds, so no id reaches it that it would refuse. */
export const POSITIVE_INT32 = '^(?:[1-9][0-9]{0,8}|1[0-9]{9}|20[0-9]{8}|21[0-3][0-9]{7}|214[0-6][0-9]{6}|2147[0-3][0-9]{5}|21474[0-7][0-9]{4}|214748[0-2][0-9]{3}|2147483[0-5][0-9]{2}|21474836[0-3][0-9]|214748364[0-7])$'

/** `{ id }` path parameters of the player routes. */
export const playerParams = {
  type: 'object',
  properties: { id: { type: 'string', pattern: POSITIVE_INT32 } },
  required: ['id'],
  additionalProperties: false
} as const
