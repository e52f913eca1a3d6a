/**
 * `pnpm backroom <command>`: operator commands against DATABASE_URL.
 *
 *   pnpm backroom keys create [--store <id>] [--label <text>]
 *   pnpm backroom keys revoke <id>
 *
 * `keys create` prints the new key's id, store and token; the token is shown
 * this once (only its HMAC is stored). Exit codes: 0 done, 1 failed (database,
 * unknown key), 2 usage error.
 */
import { parseArgs } from 'node:util'
import { connect, createApiKey, revokeApiKey, ValidationError } from '@backroom/queue-core'
import { redactDatabaseUrl } from './lib/describe-database-url.ts'

const USAGE = `usage:
  pnpm backroom keys create [--store <id>] [--label <text>]   create a key (a platform key without --store)
  pnpm backroom keys revoke <id>                               revoke a key by id`

/** A mistake in how the command was called: usage goes to stderr, exit 2. */
class UsageError extends Error {}

async function main(argv: ReadonlyArray<string>): Promise<number> {
  const [group, action, ...rest] = argv
  if (group !== 'keys' || (action !== 'create' && action !== 'revoke')) throw new UsageError(group === undefined ? 'no command given' : `unknown command: ${[group, action].filter(Boolean).join(' ')}`)
  const options =
    action === 'create'
      ? parse(rest, { store: { type: 'string' }, label: { type: 'string' } }, 0)
      : parse(rest, {}, 1)
  const url = process.env.DATABASE_URL?.trim()
  if (!url) throw new UsageError('DATABASE_URL is not set: point it at the Backroom database')
  const db = connect({ connectionString: url, max: 1, applicationName: 'backroom-cli' })
  try {
    if (action === 'create') {
      const store = options.values.store as string | undefined
      const created = await createApiKey(db.kysely, { storeId: store ?? null, label: options.values.label as string | undefined })
      console.log(`id:    ${created.keyId}`)
      console.log(`store: ${created.storeId ?? '(platform key: any store)'}`)
      console.log(`key:   ${created.key}`)
      console.log('the key is shown only now; store it in your secret manager')
      return 0
    }
    const id = options.positionals[0]!
    const revoked = await revokeApiKey(db.kysely, id)
    if (!revoked) {
      console.error(`no API key with id ${id}`)
      return 1
    }
    console.log(`revoked key ${id}`)
    return 0
  } finally {
    await db.close()
  }
}

/** parseArgs with exactly `positionals` positional arguments; anything else is a usage error. */
function parse(args: ReadonlyArray<string>, options: Record<string, { type: 'string' }>, positionals: number) {
  let parsed: ReturnType<typeof parseArgs>
  try {
    parsed = parseArgs({ args: [...args], options, allowPositionals: true, strict: true })
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err))
  }
  if (parsed.positionals.length !== positionals) {
    throw new UsageError(positionals === 0 ? `unexpected argument: ${parsed.positionals[0]}` : 'give exactly one key id')
  }
  return parsed
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof UsageError) {
      console.error(`${err.message}\n${USAGE}`)
      process.exit(2)
    }
    const message = err instanceof ValidationError ? err.message : `failed: ${err instanceof Error ? err.message : String(err)}`
    console.error(redactDatabaseUrl(message, process.env.DATABASE_URL))
    process.exit(1)
  },
)
