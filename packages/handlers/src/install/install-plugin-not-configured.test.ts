import { describe, expect, it } from 'vitest'
import { useHandlerTestBed } from '../testing/run-jobs.ts'
import { createInstallPlugin } from './install-plugin.ts'

const bed = useHandlerTestBed()

describe('install.plugin without configuration', () => {
  it('fails permanently with not_configured, naming the missing variable', async () => {
    await bed.startWorker([createInstallPlugin(bed.deps({ PLUGIN_REGISTRY_TOKEN: 'set-but-useless' }))])
    const job = await bed.enqueue({ type: 'install.plugin', payload: { pluginId: 'happy', version: '1.0.0' } })
    const done = await bed.waitFinished(job.id)
    expect(done.state).toBe('failed')
    expect(done.attempt).toBe(1)
    expect(done.lastError?.code).toBe('not_configured')
    expect(done.lastError?.message).toMatch(/PLUGIN_REGISTRY_URL/)
    expect(done.lastError?.message).not.toMatch(/set-but-useless/)
  })
})
