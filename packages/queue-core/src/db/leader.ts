import type pg from 'pg'

/** Key of the session advisory lock whose holder is the maintenance leader. */
const LEADER_LOCK_KEY = 7_426_031_119

/** Tries to take the leader lock on this session; true if it is now held. */
export async function tryLeadership(client: pg.ClientBase): Promise<boolean> {
  const result = await client.query<{ ok: boolean }>('select pg_try_advisory_lock($1) as ok', [LEADER_LOCK_KEY])
  return result.rows[0]?.ok === true
}

/** Gives the leader lock back, so a follower takes over without waiting for this session to end. */
export async function releaseLeadership(client: pg.ClientBase): Promise<void> {
  await client.query('select pg_advisory_unlock($1)', [LEADER_LOCK_KEY])
}
