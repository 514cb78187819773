// The benchmarks arrive with the benchmarks issue; until then there is nothing to measure.
console.error('No benchmarks yet: bench/ gets its suite in a later issue.')
process.exitCode = 1
