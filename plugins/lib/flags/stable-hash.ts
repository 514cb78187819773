/**
 * A stable 32-bit hash of `flag + ":" + key` (FNV-1a, then murmur3's final
 * mix so that nearby keys spread evenly), computed without building the
 * joined string. Returns a bucket in [0, 10000): the same flag and key always
 * land in the same bucket, in every process and version.
 */
export function rolloutBucket (flag: string, key: string): number {
  let hash = 0x811c9dc5
  for (let i = 0; i < flag.length; i++) hash = Math.imul(hash ^ flag.charCodeAt(i), 0x01000193)
  hash = Math.imul(hash ^ 0x3a, 0x01000193) // ':'
  for (let i = 0; i < key.length; i++) hash = Math.imul(hash ^ key.charCodeAt(i), 0x01000193)
  hash ^= hash >>> 16
  hash = Math.imul(hash, 0x85ebca6b)
  hash ^= hash >>> 13
  hash = Math.imul(hash, 0xc2b2ae35)
  hash ^= hash >>> 16
  return (hash >>> 0) % 10_000
}
