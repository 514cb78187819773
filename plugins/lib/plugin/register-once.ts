import type { FastifyInstance } from 'fastify'

/**
 * Refuses a second registration of a plugin in the same scope, as
 * @fastify/postgres and @fastify/redis do. The marker is a symbol decorator,
 * so it follows Fastify's encapsulation: sibling scopes may each have one.
 */
export function registerOnce (app: FastifyInstance, plugin: string): void {
  const marker = Symbol.for(`fastify-resilience.registered:${plugin}`)
  if (app.hasDecorator(marker)) {
    throw new Error(`${plugin} has already been registered`)
  }
  app.decorate(marker, true)
}
