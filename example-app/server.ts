// The players service arrives with the example-app issue; until then there is
// nothing to start.
console.error('The example app is not built yet: example-app/ gets its players service in a later issue. Run `npm test` to exercise the plugins.')
process.exitCode = 1
