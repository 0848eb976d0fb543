/* ktrace.c — a CUPTI injection library for scripts/gpu_trace.sh: loaded by the CUDA driver through
 * CUDA_INJECTION64_PATH, it records every kernel a process runs (start, duration, grid, block, stream, name)
 * and writes them as CSV to $KTRACE_OUT (default ktrace.csv) when the process exits. Kernel times measured this
 * way are the ones training sees (power cap, concurrent work), unlike Nsight Compute's one-by-one replays, and
 * it needs no Nsight Systems (the GPU hosts have none). */
#include <cupti.h>
#include <stdio.h>
#include <stdlib.h>
static FILE *out;
static void CUPTIAPI buf_req(uint8_t **buf, size_t *size, size_t *max_records) {
    *size = 16u << 20;
    *buf = aligned_alloc(8, *size);
    *max_records = 0;
}
static void CUPTIAPI buf_done(CUcontext ctx, uint32_t stream, uint8_t *buf, size_t size, size_t valid) {
    (void)ctx; (void)stream; (void)size;
    CUpti_Activity *r = NULL;
    while (cuptiActivityGetNextRecord(buf, valid, &r) == CUPTI_SUCCESS) {
        if (r->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) continue;
        const CUpti_ActivityKernel10 *k = (const CUpti_ActivityKernel10 *)r;
        fprintf(out, "%llu,%llu,%d,%d,%d,%d,%d,%d,%u,\"%s\"\n", (unsigned long long)k->start,
                (unsigned long long)(k->end - k->start), k->gridX, k->gridY, k->gridZ, k->blockX, k->blockY, k->blockZ,
                k->streamId, k->name);
    }
    free(buf);
}
static void finish(void) {
    cuptiActivityFlushAll(1);
    if (out) fclose(out);
}
int InitializeInjection(void) {
    const char *path = getenv("KTRACE_OUT");
    out = fopen(path ? path : "ktrace.csv", "w");
    if (!out) return 0;
    fprintf(out, "Start (ns),Duration (ns),GrdX,GrdY,GrdZ,BlkX,BlkY,BlkZ,Stream,Name\n");
    cuptiActivityRegisterCallbacks(buf_req, buf_done);
    cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
    atexit(finish);
    return 1;
}
