/**
 * `pnpm backroom <command>`: operator commands against DATABASE_URL.
 *
 *   pnpm backroom keys create [--store <id>] [--label <text>]
 *   pnpm backroom keys revoke <id>
 *   pnpm backroom keys audit <id> [--limit <n>]
 *
 * `keys create` prints the new key's id, store and token; the token is shown
 * this once (only its HMAC is stored). Creations and revocations made here
 * are audited with the actor `cli`. `keys audit` prints a key's audit newest
 * first (`admin` and `admin-previous` name the admin keys). Exit codes: 0
 * done, 1 failed (database, unknown key), 2 usage error.
 */
import { parseArgs } from 'node:util'
import { connect, createApiKey, listApiKeyEvents, MAX_AUDIT_PAGE, revokeApiKey, ValidationError, type ApiKeyEvent } from '@backroom/queue-core'
import { redactDatabaseUrl } from './lib/describe-database-url.ts'

const USAGE = `usage:
  pnpm backroom keys create [--store <id>] [--label <text>]   create a key (a platform key without --store)
  pnpm backroom keys revoke <id>                               revoke a key by id
  pnpm backroom keys audit <id> [--limit <n>]                  a key's audit, newest first (id: a key id, admin or admin-previous)`

/** A mistake in how the command was called: usage goes to stderr, exit 2. */
class UsageError extends Error {}

async function main(argv: ReadonlyArray<string>): Promise<number> {
  const [group, action, ...rest] = argv
  if (group !== 'keys' || (action !== 'create' && action !== 'revoke' && action !== 'audit')) {
    throw new UsageError(group === undefined ? 'no command given' : `unknown command: ${[group, action].filter(Boolean).join(' ')}`)
  }
  const options =
    action === 'create'
      ? parse(rest, { store: { type: 'string' }, label: { type: 'string' } }, 0)
      : action === 'audit'
        ? parse(rest, { limit: { type: 'string' } }, 1)
        : parse(rest, {}, 1)
  const limitText = options.values.limit as string | undefined
  const limit = limitText === undefined ? MAX_AUDIT_PAGE : Number(limitText)
  if (!/^[0-9]{1,4}$/.test(limitText ?? '1') || limit < 1 || limit > MAX_AUDIT_PAGE) throw new UsageError(`--limit must be a whole number from 1 to ${MAX_AUDIT_PAGE}`)
  const url = process.env.DATABASE_URL?.trim()
  if (!url) throw new UsageError('DATABASE_URL is not set: point it at the Backroom database')
  const db = connect({ connectionString: url, max: 1, applicationName: 'backroom-cli' })
  try {
    if (action === 'create') {
      const store = options.values.store as string | undefined
      const created = await createApiKey(db.kysely, { storeId: store ?? null, label: options.values.label as string | undefined, actor: 'cli' })
      console.log(`id:    ${created.keyId}`)
      console.log(`store: ${created.storeId ?? '(platform key: any store)'}`)
      console.log(`key:   ${created.key}`)
      console.log('the key is shown only now; store it in your secret manager')
      return 0
    }
    const id = options.positionals[0]!
    if (action === 'audit') {
      const page = await listApiKeyEvents(db.kysely, id, { limit })
      if (!page) {
        console.error(`no API key with id ${id}`)
        return 1
      }
      for (const event of page.events) console.log(describeEvent(event))
      if (page.events.length === 0) console.log(`no audit rows for key ${id}`)
      if (page.nextCursor !== null) console.log(`(the newest ${limit} rows; older ones: GET /v1/keys/${id}/events)`)
      return 0
    }
    const revoked = await revokeApiKey(db.kysely, id, { actor: 'cli' })
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

/** One audit row as a line: time, event, then what it says (never a token: the audit holds none). */
function describeEvent(e: ApiKeyEvent): string {
  const store = `store ${e.storeId ?? '(platform)'}`
  if (e.event === 'used') {
    return `${e.at.toISOString()}  used     ${e.uses} requests in this hour (first ${e.firstUsedAt!.toISOString()}, last ${e.lastUsedAt!.toISOString()})  ${store}`
  }
  return `${e.at.toISOString()}  ${e.event.padEnd(7)}  by ${e.actor}  ${store}`
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
