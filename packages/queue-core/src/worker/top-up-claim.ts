import type { Logger } from 'pino'
import type { ClaimArgs } from '../db/claim.ts'
import { claimLimitedOnSession } from '../db/claim-limited.ts'
import type { Executor } from '../db/database.ts'
import type { ClaimedJobRow } from '../db/rows.ts'

/**
 * Fills the room a plain claim left with a limited claim of `limited` types
 * (the plain claim skips them and only reports that it saw some), so their
 * jobs start now rather than at the next wake-up. The plain claim's rows are
 * leased already: a failing limited claim must not drop them, so it is
 * logged and they are returned alone (tried again at the next claim, not at
 * once: a failing statement must not spin).
 */
export async function topUpClaim(
  session: Executor,
  args: ClaimArgs & { readonly limited: ReadonlyArray<string> },
  plainRows: ClaimedJobRow[],
  log: Logger,
): Promise<{ rows: ClaimedJobRow[]; retryInMs: number | null }> {
  if (args.limited.length === 0 || plainRows.length >= args.limit) return { rows: plainRows, retryInMs: null }
  try {
    const more = await claimLimitedOnSession(session, { ...args, limit: args.limit - plainRows.length })
    return { rows: [...plainRows, ...more.rows], retryInMs: more.retryInMs }
  } catch (err) {
    log.error({ err }, 'limited claim failed')
    return { rows: plainRows, retryInMs: null }
  }
}
