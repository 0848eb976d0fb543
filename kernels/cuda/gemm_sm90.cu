// gemm_sm90.cu — kiln's own Hopper GEMM (kernels/gemm_sm90_cuda.h): D(M,N) = A(M,K) B(N,K)^T in BF16 with FP32
// accumulation, optionally with the SwiGLU forward or backward in the epilogue.
//
// Persistent clusters of two blocks, one block per SM, three warpgroups each. The two blocks of a cluster work on
// two adjacent 128-row blocks of the output and the same 256 columns, so they share the B tile: each loads one
// 128 x 64 half of it by TMA and multicasts it to both (half the L2 reads of B). Warpgroup 0 is the producer: one
// thread loads 128 x 64 tiles of A and its half of B (128-byte swizzle) into a ring of 4 shared-memory stages,
// each guarded by a "full" mbarrier (all of the stage's bytes arrived, the peer's half included) and an "empty"
// one (the consumers of both blocks are done with it: the peer's next half lands here too). Warpgroups 1 and 2
// are the consumers: each multiplies 64 rows of the 128 x 256 output tile by wgmma (m64n256k16, four per stage),
// keeps one stage's products in flight while it waits for the next. At a tile's end it keeps its 64 x 256 FP32
// accumulators as BF16 pairs (registers given up by the producer) and writes them out during the next tile's
// K-blocks, in slots spread evenly over them (128 columns; SwiGLU's h in four slots of 32), through a shared-memory
// staging buffer and TMA stores: the tensor cores run on while the epilogue's stores and arithmetic are issued.
// (All clusters run their tiles in step, so slots crowded into the first K-blocks made every SM's epilogue
// traffic arrive at once: spread out, the 1.5B model trains 0.8% faster; the two consumers' slots half a stretch
// apart, about 0.4% more.)
// Tiles are visited in groups of 32 row blocks (12 MB of A at K = 1536) so that the A tiles stay in L2 while the
// group sweeps the columns, and B is read from memory once per group. An odd last row block leaves the second block
// of its cluster a tile past M: it loads zeros and its stores are clipped.
//
// SwiGLU forward: B's 256 rows are 128 gate rows and the matching 128 up rows (one half per block of the cluster),
// so each thread holds a gate value and its up value in the same registers (columns j and j + 128 of the tile) and
// writes gate and up to gu and silu(gate) up to h. SwiGLU backward: D is dh, the down projection's dinp (B = the
// down weight transposed), kept as BF16 pairs and never written; each 32-column slot of it loads the matching gate
// and up boxes of gu by TMA one slot ahead (double-buffered in the staging buffer), turns them into the two
// gradients in place and stores them to dgu. The kernels are compiled for sm_90a only; elsewhere they are empty and
// kl_gemm_sm90_available() says no.
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <initializer_list>
#include <type_traits>

#include "cuda_check.cuh"
#include "gemm_sm90_cuda.h"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ == 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define KL_SM90A_DEVICE 1
#endif

namespace {

constexpr int kBM = 128, kBN = 256, kBK = 64, kStages = 4, kThreads = 384;
constexpr int kABytes = kBM * kBK * 2, kBBytes = kBN * kBK * 2, kStageBytes = kABytes + kBBytes;
constexpr int kBoxBytes = 64 * 64 * 2;    // one 64 x 64 box of the output, as a TMA store writes it
constexpr int kOutBytes = 2 * kBoxBytes;  // a consumer's staging buffer: 64 rows x 128 columns
constexpr int kHalfBytes = kOutBytes / 2;  // the SwiGLU backward's gate and up boxes of one slot
constexpr int kSmemBytes = kStages * kStageBytes + 2 * kOutBytes + 1024 + (2 * kStages + 4) * 8;  // + align, barriers

#ifdef KL_SM90A_DEVICE
constexpr int kGroupM = 32;  // row blocks per group of the tile order

__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void mbar_init(uint64_t *bar, int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(bar)), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(uint64_t *bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(bar)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t *bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_u32(bar)) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t *bar, uint32_t parity) {
    uint32_t done;
    do {
        asm volatile(
            "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done)
            : "r"(smem_u32(bar)), "r"(parity)
            : "memory");
    } while (!done);
}
// Arrives on the barrier at the same shared-memory offset in CTA `cta` of the cluster (release at CTA scope, as
// for a local arrival: a cluster-scope release would add a memory barrier to every arrival).
__device__ __forceinline__ void mbar_arrive_cluster(uint64_t *bar, uint32_t cta) {
    asm volatile(
        "{\n.reg .b32 remote;\nmapa.shared::cluster.u32 remote, %0, %1;\n"
        "mbarrier.arrive.shared::cluster.b64 _, [remote];\n}\n" ::"r"(smem_u32(bar)),
        "r"(cta)
        : "memory");
}
__device__ __forceinline__ uint32_t cluster_rank() {
    uint32_t r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
    return r;
}
// All threads of both CTAs of the cluster.
__device__ __forceinline__ void cluster_sync() {
    asm volatile("barrier.cluster.arrive.release;\nbarrier.cluster.wait.acquire;" ::: "memory");
}
// The box at (c0, c1) = (column, row) of the tensor map into shared memory; its bytes count on `bar`.
__device__ __forceinline__ void tma_load(void *dst, const CUtensorMap *map, uint64_t *bar, int c0, int c1) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];" ::"r"(
            smem_u32(dst)),
        "l"((uint64_t)map), "r"(smem_u32(bar)), "r"(c0), "r"(c1)
        : "memory");
}
// The same box into the same shared-memory offset of every CTA in `mask`, counted on each one's `bar`.
__device__ __forceinline__ void tma_load_multicast(void *dst, const CUtensorMap *map, uint64_t *bar, int c0, int c1,
                                                   uint16_t mask) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster"
        " [%0], [%1, {%3, %4}], [%2], %5;" ::"r"(smem_u32(dst)),
        "l"((uint64_t)map), "r"(smem_u32(bar)), "r"(c0), "r"(c1), "h"(mask)
        : "memory");
}
// Matrix descriptor of a K-major tile of 128-byte rows in the 128-byte swizzle: groups of 8 rows 1024 bytes apart
// (the stride byte offset); the leading byte offset is unused in this layout. The next 16 columns of K start 32
// bytes further, which adds 2 to the encoded address.
__device__ __forceinline__ uint64_t smem_desc(const void *p) {
    return ((smem_u32(p) & 0x3FFFFu) >> 4) | (1ull << 16) | ((uint64_t)(1024 >> 4) << 32) | (1ull << 62);
}
// The box at (c0, c1) of the tensor map from shared memory (elements outside the tensor are not written), in the
// thread's current bulk group.
__device__ __forceinline__ void tma_store(const CUtensorMap *map, const void *src, int c0, int c1) {
    asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%2, %3}], [%1];" ::"l"((uint64_t)map),
                 "r"(smem_u32(src)), "r"(c0), "r"(c1)
                 : "memory");
}
__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;" ::: "memory"); }
// Waits until the thread's bulk stores, all but the latest PENDING groups, have read their shared memory (READ) or
// completed.
template <bool READ, int PENDING = 0>
__device__ __forceinline__ void bulk_wait() {
    if (READ)
        asm volatile("cp.async.bulk.wait_group.read %0;" ::"n"(PENDING) : "memory");
    else
        asm volatile("cp.async.bulk.wait_group %0;" ::"n"(PENDING) : "memory");
}
// Makes this thread's shared-memory writes visible to the TMA unit (the async proxy).
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }
// Barrier of one warpgroup (128 threads) on hardware barrier `id`.
__device__ __forceinline__ void wg_barrier(int id) { asm volatile("bar.sync %0, 128;" ::"r"(id) : "memory"); }
__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wg_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}
// Keeps the compiler from moving accumulator reads or writes across the asynchronous products.
__device__ __forceinline__ void fence_acc(float (&d)[128]) {
#pragma unroll
    for (int i = 0; i < 128; i++) asm volatile("" : "+f"(d[i])::"memory");
}

// acc(64 x 256) (+)= A(64 x 16) B(256 x 16)^T, both operands K-major in shared memory.
__device__ __forceinline__ void wgmma_256(float (&d)[128], uint64_t da, uint64_t db, int accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
        "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
        "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "
        "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, "
        "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
        "}, %128, %129, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
          "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
          "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
          "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
          "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]),
          "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]),
          "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
          "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]),
          "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]),
          "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]),
          "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]),
          "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]),
          "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]),
          "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]),
          "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]),
          "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]),
          "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]),
          "+f"(d[126]), "+f"(d[127])
        : "l"(da), "l"(db), "r"(accumulate));
}

// Work item `pair` (two row blocks, one per CTA of the cluster, and a column block) of `pairs_m` x nt -> its first
// row block and its column block, in groups of kGroupM row blocks (the row pair fastest within a group), every
// other group sweeping the columns backwards so that it starts on the B tiles its predecessor ended on.
__device__ __forceinline__ void pair_at(int pair, int pairs_m, int nt, int &mb, int &nb) {
    constexpr int g = kGroupM / 2;
    const int per_group = g * nt, group = pair / per_group, first = group * g;
    const int gm = pairs_m - first < g ? pairs_m - first : g, r = pair % per_group;
    mb = 2 * (first + r % gm);
    nb = group % 2 ? nt - 1 - r / gm : r / gm;
}

#endif  // KL_SM90A_DEVICE

// The epilogues. kPlain: maps[0] is D(M, N) = A B^T, written in column blocks of 256. kSwigluForward: N = F, column
// block nb multiplies B rows [128 nb, 128 nb + 128) (gate) and [F + 128 nb, ...) (up); maps[0] is gu(M, 2F) and
// maps[1] h(M, F). kSwigluBackward: D = dh(M, F) in column blocks of 256 as kPlain, never written; maps[0] and [1]
// read the gate and up columns of gu, maps[2] and [3] write the gate and up columns of dgu.
enum Epilogue { kPlain, kSwigluForward, kSwigluBackward };
struct OutMaps {
    CUtensorMap m[4];
};

template <int EPI>
__global__ void __cluster_dims__(2, 1, 1) __launch_bounds__(kThreads, 1)
    gemm_sm90(const __grid_constant__ CUtensorMap ta, const __grid_constant__ CUtensorMap tb,
              const __grid_constant__ OutMaps maps, int M, int N, int K) {
#ifdef KL_SM90A_DEVICE
    constexpr bool FWD = EPI == kSwigluForward, BWD = EPI == kSwigluBackward;
    extern __shared__ uint8_t smem_raw[];
    uint8_t *smem = reinterpret_cast<uint8_t *>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
    uint8_t *out_stage = smem + kStages * kStageBytes;  // kOutBytes per consumer warpgroup
    uint64_t *full = reinterpret_cast<uint64_t *>(out_stage + 2 * kOutBytes), *empty = full + kStages;
    uint64_t *gate_up = empty + kStages;  // kSwigluBackward: per consumer, one per half of its staging buffer
    const int wg = threadIdx.x / 128, t = threadIdx.x % 128;
    const uint32_t rank = cluster_rank();
    if (threadIdx.x == 0) {
        for (int s = 0; s < kStages; s++) {
            mbar_init(&full[s], 1);
            mbar_init(&empty[s], 16);  // lane 0 of each consumer warp of both CTAs (a stage holds both B halves)
        }
        for (int i = 0; i < 4; i++) mbar_init(&gate_up[i], 1);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    cluster_sync();  // the peer's barriers exist before any multicast or arrival reaches them
    const int half = kBN / 2, cols = FWD ? half : kBN;  // output columns per tile (of h, or of D)
    const int mt = (M + kBM - 1) / kBM, nt = (N + cols - 1) / cols, kb = (K + kBK - 1) / kBK;
    const int pairs_m = (mt + 1) / 2, pairs = pairs_m * nt, cluster = blockIdx.x / 2, clusters = gridDim.x / 2;
    if (wg == 0) {  // producer
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;");  // its registers go to the consumers
        if (t == 0) {
            int s = 0;
            uint32_t ph = 0;
            for (int pair = cluster; pair < pairs; pair += clusters) {
                int mb, nb;
                pair_at(pair, pairs_m, nt, mb, nb);
                // this CTA's B half, multicast to both: rows [256 nb + 128 rank, +128), or with the SwiGLU
                // forward the gate (rank 0) or up (rank 1) rows of column block nb
                const int brow = FWD ? (rank ? N : 0) + nb * half : nb * kBN + (int)rank * half;
                for (int k = 0; k < kb; k++) {
                    mbar_wait(&empty[s], ph ^ 1);
                    uint8_t *st = smem + s * kStageBytes;
                    mbar_expect_tx(&full[s], kStageBytes);
                    tma_load(st, &ta, &full[s], k * kBK, (mb + (int)rank) * kBM);
                    tma_load_multicast(st + kABytes + rank * (kBBytes / 2), &tb, &full[s], k * kBK, brow, 0x3);
                    if (++s == kStages) s = 0, ph ^= 1;
                }
            }
        }
    } else {
        // 128 accumulators and the previous tile's 64 BF16 pairs live at once (232 registers: 40 producer + 2 x 232
        // consumer warpgroups fit the 64K register file)
        asm volatile("setmaxnreg.inc.sync.aligned.u32 232;");
        const int cw = wg - 1, warp = t / 32, lane = t % 32;
        float acc[128];
        // The previous tile as BF16 pairs, written out while this tile's K-blocks run on the tensor cores:
        // register 2j + rr holds columns 8j + 2 (lane % 4) + {0, 1} of row 16 warp + lane / 4 + 8 rr (the pairs of
        // the m64n256 accumulator layout, where register 4j + r holds row ... + 8 (r / 2), column ... + r % 2).
        uint32_t out[64];
        int out_row = -1, out_nb = 0;  // the previous tile's first row of this warpgroup, its column block; -1: none
        uint8_t *stage = out_stage + cw * kOutBytes;
        // kSwigluBackward: the gate and up boxes (64 rows x 32 columns each, 64-byte swizzle) of slot q of the tile
        // at (row, nb) into half q % 2 of the staging buffer, once the store that last read that half has read it.
        auto load_gate_up = [&](int q, int row, int nb) {
            if (t != 0) return;
            uint8_t *buf = stage + (q & 1) * kHalfBytes;
            uint64_t *bar = &gate_up[2 * cw + (q & 1)];
            bulk_wait<true, 1>();  // all but the latest store (the other half's) have read their buffer
            mbar_expect_tx(bar, kHalfBytes);
            tma_load(buf, &maps.m[0], bar, nb * kBN + 32 * q, row);
            tma_load(buf + kHalfBytes / 2, &maps.m[1], bar, nb * kBN + 32 * q, row);
        };
        // Output slot S of the previous tile, in a K-block of the next. kPlain: two slots of 128 columns, and
        // kSwigluForward: gate, up (both to gu), then four 32-column quarters of silu(gate) up stored to h after the
        // last (they spread the exponentials and reciprocals, 128 SFU operations per thread, over four slots).
        // Each goes through the warpgroup's staging buffer, two 64 x 64 boxes in the 128-byte swizzle (16-byte chunk
        // c of row r at c ^ (r % 8): the warp's stores hit 32 different banks), by TMA stores that run on while the
        // warpgroup goes on. kSwigluBackward: eight slots of 32 columns of dh; each reads its gate and up box
        // (loaded during the previous slot), overwrites them with the two gradients and stores them to dgu.
        auto store_slot = [&](auto slot) {
            constexpr int S = decltype(slot)::value;
            if constexpr (BWD) {
                uint8_t *buf = stage + (S & 1) * kHalfBytes;
                mbar_wait(&gate_up[2 * cw + (S & 1)], (S >> 1) & 1);  // each half fills twice per tile
#pragma unroll
                for (int jj = 0; jj < 4; jj++)
#pragma unroll
                    for (int rr = 0; rr < 2; rr++) {
                        // 64-byte swizzle: 16-byte chunk c of row r at c ^ (r / 2 % 4), again 32 different banks
                        const int r = warp * 16 + lane / 4 + 8 * rr;
                        const uint32_t off = r * 64 + ((jj ^ ((r >> 1) & 3)) << 4) + 4 * (lane % 4);
                        const uint32_t a_g = smem_u32(buf) + off, a_u = a_g + kHalfBytes / 2;
                        uint32_t g, u;
                        asm volatile("ld.shared.u32 %0, [%1];" : "=r"(g) : "r"(a_g) : "memory");
                        asm volatile("ld.shared.u32 %0, [%1];" : "=r"(u) : "r"(a_u) : "memory");
                        const uint32_t d = out[2 * (4 * S + jj) + rr];
                        float dg0, du0, dg1, du1;
                        kl::swiglu_backward(__uint_as_float(d << 16), __uint_as_float(g << 16),
                                            __uint_as_float(u << 16), dg0, du0);
                        kl::swiglu_backward(__uint_as_float(d & 0xffff0000u), __uint_as_float(g & 0xffff0000u),
                                            __uint_as_float(u & 0xffff0000u), dg1, du1);
                        asm volatile("st.shared.u32 [%0], %1;" ::"r"(a_g), "r"(kl::pack_bf16x2(dg0, dg1)) : "memory");
                        asm volatile("st.shared.u32 [%0], %1;" ::"r"(a_u), "r"(kl::pack_bf16x2(du0, du1)) : "memory");
                    }
                fence_proxy_async();
                wg_barrier(1 + cw);
                if (t == 0) {
                    tma_store(&maps.m[2], buf, out_nb * kBN + 32 * S, out_row);
                    tma_store(&maps.m[3], buf + kHalfBytes / 2, out_nb * kBN + 32 * S, out_row);
                    bulk_commit();
                }
                if (S + 1 < 8) load_gate_up(S + 1, out_row, out_nb);
            } else {
                constexpr bool kH = FWD && S >= 2;
                constexpr int q = kH ? S - 2 : 0, j0 = kH ? 4 * q : 0, nj = kH ? 4 : 16;
                if (!kH || q == 0) {
                    if (t == 0) bulk_wait<true>();  // the previous slot's store has read the buffer
                    wg_barrier(1 + cw);
                }
#pragma unroll
                for (int j = j0; j < j0 + nj; j++)
#pragma unroll
                    for (int rr = 0; rr < 2; rr++) {
                        const int r = warp * 16 + lane / 4 + 8 * rr;
                        uint32_t v;
                        if (!kH) {
                            v = out[2 * (16 * S + j) + rr];
                        } else {
                            const uint32_t g = out[2 * j + rr], u = out[32 + 2 * j + rr];
                            v = kl::pack_bf16x2(kl::swiglu(__uint_as_float(g << 16), __uint_as_float(u << 16)),
                                                kl::swiglu(__uint_as_float(g & 0xffff0000u),
                                                           __uint_as_float(u & 0xffff0000u)));
                        }
                        const uint32_t off =
                            (j / 8) * kBoxBytes + r * 128 + (((j % 8) ^ (r % 8)) << 4) + 4 * (lane % 4);
                        asm volatile("st.shared.u32 [%0], %1;" ::"r"(smem_u32(stage) + off), "r"(v) : "memory");
                    }
                if (!kH || q == 3) {
                    fence_proxy_async();
                    wg_barrier(1 + cw);
                    if (t == 0) {
                        const CUtensorMap *map = kH ? &maps.m[1] : &maps.m[0];
                        const int gcol = FWD ? (S == 1 ? N : 0) + out_nb * half : out_nb * kBN + S * half;
                        tma_store(map, stage, gcol, out_row);
                        tma_store(map, stage + kBoxBytes, gcol + 64, out_row);
                        bulk_commit();
                    }
                }
            }
        };
        constexpr int kSlots = EPI == kPlain ? 2 : FWD ? 6 : 8;
        // Slot k (dynamic) in the K-loop, and the slots first.. after it: both unrolled at compile time into
        // chains of calls (a loop over a run-time dispatch made ptxas spill 652 bytes).
        auto slot_at = [&](int k, auto self, auto slot) {
            constexpr int S = decltype(slot)::value;
            if (k == S) store_slot(slot);
            else if constexpr (S + 1 < kSlots) self(k, self, std::integral_constant<int, S + 1>());
        };
        auto slots_from = [&](int first, auto self, auto slot) {
            constexpr int S = decltype(slot)::value;
            if (first <= S) store_slot(slot);
            if constexpr (S + 1 < kSlots) self(first, self, std::integral_constant<int, S + 1>());
        };
        auto store_slots_from = [&](int first) {  // slots first.. of the previous tile, if there is one
            if (out_row >= 0) slots_from(first, slots_from, std::integral_constant<int, 0>());
        };
        // Slot S in the last K-block of the S-th of kSlots equal stretches of the K-loop (or in K-block S when there
        // are fewer K-blocks than slots): spread over the whole tile rather than crowded into its first K-blocks,
        // where every cluster would run its epilogue at once (they all start together, and their tiles take equally
        // long). Coming late in its stretch gives slot 0 of the SwiGLU backward a few K-blocks more for the gate and
        // up boxes that the previous tile's end loads. The second consumer runs its slots half a stretch earlier
        // than the first, so that while one works on a slot the other's products keep the tensor cores busy.
        const int lead = cw == 1 && kb >= kSlots ? kb / kSlots / 2 : 0;
        auto slot_k = [&](int S) { return kb >= kSlots ? (S + 1) * kb / kSlots - 1 - lead : S; };
        int s = 0;
        uint32_t ph = 0;
        for (int pair = cluster; pair < pairs; pair += clusters) {
            int mb, nb;
            pair_at(pair, pairs_m, nt, mb, nb);
            int prev = -1, slot = 0, next_k = slot_k(0);
            // a stage is free again once this warp is done with it in both CTAs (the peer's B half came too)
            auto release = [&](int stage) {
                if (lane == 0) {
                    mbar_arrive(&empty[stage]);
                    mbar_arrive_cluster(&empty[stage], rank ^ 1);
                }
            };
            for (int k = 0; k < kb; k++) {
                mbar_wait(&full[s], ph);
                const uint8_t *st = smem + s * kStageBytes;
                const uint64_t da = smem_desc(st + cw * 64 * 128), db = smem_desc(st + kABytes);
                wg_fence();
                fence_acc(acc);
#pragma unroll
                for (int kk = 0; kk < kBK / 16; kk++) wgmma_256(acc, da + 2 * kk, db + 2 * kk, k > 0 || kk > 0);
                wg_commit();
                fence_acc(acc);
                // a slot of the previous tile's output now and then, while this one's products run
                if (out_row >= 0 && k == next_k && slot < kSlots) {
                    slot_at(slot, slot_at, std::integral_constant<int, 0>());
                    next_k = slot_k(++slot);
                }
                wg_wait<1>();  // the previous stage's products are done: it can be refilled
                if (prev >= 0) release(prev);
                prev = s;
                if (++s == kStages) s = 0, ph ^= 1;
            }
            store_slots_from(slot);  // K shorter than the slots: the rest now, before `out` is overwritten
            // past M for the second CTA of an odd last pair: all its stores are clipped (and its loads zeros)
            out_row = (mb + (int)rank) * kBM + cw * 64;
            out_nb = nb;
            if constexpr (BWD) load_gate_up(0, out_row, out_nb);  // during the last products
            wg_wait<0>();
            fence_acc(acc);
            release(prev);
#pragma unroll
            for (int j = 0; j < 32; j++)
#pragma unroll
                for (int rr = 0; rr < 2; rr++)
                    out[2 * j + rr] = kl::pack_bf16x2(acc[4 * j + 2 * rr], acc[4 * j + 2 * rr + 1]);
        }
        store_slots_from(0);  // the last tile
        if (t == 0) bulk_wait<false>();  // the last stores are done before the block's shared memory goes
    }
    cluster_sync();  // no CTA leaves while its peer may still arrive on its barriers
#endif
}

// Writes 1 where the sm_90a code exists (the kernels above are empty elsewhere).
__global__ void probe_sm90a(int *ok) {
#ifdef KL_SM90A_DEVICE
    *ok = 1;
#else
    *ok = 0;
#endif
}

PFN_cuTensorMapEncodeTiled_v12000 encode_fn() {
    static PFN_cuTensorMapEncodeTiled_v12000 fn = nullptr;
    static bool tried = false;
    if (!tried) {
        tried = true;
        cudaDriverEntryPointQueryResult q;
        void *p = nullptr;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) ==
                cudaSuccess &&
            q == cudaDriverEntryPointSuccess)
            fn = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
    }
    return fn;
}

// Tensor map of a row-major (rows, cols) BF16 matrix with leading dimension ld, in boxes of box_rows x 64 in the
// 128-byte swizzle (the product's tiles and the 64-column output boxes), or with narrow = true of box_rows x 32 in
// the 64-byte swizzle (the SwiGLU backward's gate and up slots).
kl_status tensor_map(CUtensorMap *m, const void *p, int rows, int cols, int ld, int box_rows, const char *what,
                     bool narrow = false) {
    const PFN_cuTensorMapEncodeTiled_v12000 enc = encode_fn();
    if (!enc) return kl_error(KL_ERR_UNSUPPORTED, "sm90 gemm: the driver has no cuTensorMapEncodeTiled");
    const cuuint64_t dims[2] = {(cuuint64_t)cols, (cuuint64_t)rows}, strides[1] = {(cuuint64_t)ld * 2};
    const cuuint32_t box[2] = {narrow ? 32u : (cuuint32_t)kBK, (cuuint32_t)box_rows}, elem[2] = {1, 1};
    const CUresult r = enc(m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<void *>(p), dims, strides, box, elem,
                           CU_TENSOR_MAP_INTERLEAVE_NONE,
                           narrow ? CU_TENSOR_MAP_SWIZZLE_64B : CU_TENSOR_MAP_SWIZZLE_128B,
                           CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS)
        return kl_error(KL_ERR_INVALID, "sm90 gemm: no tensor map for %s (%d x %d, ld %d): CUresult %d", what, rows,
                        cols, ld, (int)r);
    return KL_OK;
}

// D-side maps already made in `maps`; N is the product's (F for both SwiGLU epilogues).
template <int EPI>
kl_status launch(const OutMaps &maps, const kl_bf16 *A, const kl_bf16 *B, int M, int N, int K, cudaStream_t stream) {
    if (!kl_gemm_sm90_available())
        return kl_error(KL_ERR_UNSUPPORTED, "sm90 gemm: needs an sm_90 device and sm_90a code");
    CUtensorMap ta, tb;
    KL_TRY(tensor_map(&ta, A, M, K, K, kBM, "A"));
    // each CTA of a cluster loads one half of the B tile
    KL_TRY(tensor_map(&tb, B, EPI == kSwigluForward ? 2 * N : N, K, K, kBN / 2, "B"));
    static int clusters = 0;  // clusters of two that fit on the device at once
    if (clusters == 0) {
        KL_CUDA_CHECK(cudaFuncSetAttribute(gemm_sm90<EPI>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes));
        cudaLaunchConfig_t cfg = {};
        cfg.gridDim = dim3(2);
        cfg.blockDim = dim3(kThreads);
        cfg.dynamicSmemBytes = kSmemBytes;
        KL_CUDA_CHECK(cudaOccupancyMaxActiveClusters(&clusters, gemm_sm90<EPI>, &cfg));
        if (clusters < 1) return kl_error(KL_ERR_UNSUPPORTED, "sm90 gemm: no cluster of two fits on this device");
    }
    const int cols = EPI == kSwigluForward ? kBN / 2 : kBN;
    const long long pairs = (long long)((M + 2 * kBM - 1) / (2 * kBM)) * ((N + cols - 1) / cols);
    const int grid = 2 * (pairs < clusters ? (int)pairs : clusters);
    gemm_sm90<EPI><<<grid, kThreads, kSmemBytes, stream>>>(ta, tb, maps, M, N, K);
    KL_CUDA_CHECK_LAUNCH();
    return KL_OK;
}

bool aligned(std::initializer_list<const void *> ps) {
    for (const void *p : ps)
        if (!kl::aligned16(p)) return false;
    return true;
}

}  // namespace

extern "C" bool kl_gemm_sm90_available(void) {
    static int state = -1;  // unknown, no, yes
    if (state < 0) {
        state = 0;
        int dev = 0, major = 0, minor = 0, *ok = nullptr, got = 0;
        if (cudaGetDevice(&dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess && major == 9 &&
            minor == 0 && encode_fn() && cudaMalloc(&ok, sizeof(int)) == cudaSuccess) {
            probe_sm90a<<<1, 1>>>(ok);
            if (cudaMemcpy(&got, ok, sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess && got == 1) state = 1;
            cudaFree(ok);
        }
        cudaGetLastError();  // a failed probe (no code for this device) is an answer, not an error to keep
    }
    return state == 1;
}

extern "C" bool kl_gemm_sm90_fits(int N, int K) { return N >= 1 && K >= 1 && N % 8 == 0 && K % 8 == 0; }

extern "C" kl_status kl_gemm_sm90_cuda(kl_bf16 *out, const kl_bf16 *inp, const kl_bf16 *w, int M, int N, int K,
                                       cudaStream_t stream) {
    if (M < 1 || !kl_gemm_sm90_fits(N, K))
        return kl_error(KL_ERR_UNSUPPORTED, "sm90 gemm: expected M, N, K >= 1 and N, K multiples of 8 (got %d, %d, %d)",
                        M, N, K);
    if (!aligned({out, inp, w})) return kl_error(KL_ERR_UNSUPPORTED, "sm90 gemm: pointers must be 16-byte aligned");
    OutMaps maps;
    KL_TRY(tensor_map(&maps.m[0], out, M, N, N, 64, "D"));
    return launch<kPlain>(maps, inp, w, M, N, K, stream);
}

extern "C" bool kl_gemm_sm90_swiglu_fits(int F, int K) { return F >= 1 && K >= 1 && F % 128 == 0 && K % 8 == 0; }

extern "C" kl_status kl_gemm_sm90_swiglu_cuda(kl_bf16 *gu, kl_bf16 *h, const kl_bf16 *inp, const kl_bf16 *w, int M,
                                              int F, int K, cudaStream_t stream) {
    if (M < 1 || !kl_gemm_sm90_swiglu_fits(F, K))
        return kl_error(KL_ERR_UNSUPPORTED,
                        "sm90 gemm + swiglu: expected M, F, K >= 1, F a multiple of 128, K of 8 (got %d, %d, %d)", M,
                        F, K);
    if (!aligned({gu, h, inp, w}))
        return kl_error(KL_ERR_UNSUPPORTED, "sm90 gemm + swiglu: pointers must be 16-byte aligned");
    OutMaps maps;
    KL_TRY(tensor_map(&maps.m[0], gu, M, 2 * F, 2 * F, 64, "gu"));
    KL_TRY(tensor_map(&maps.m[1], h, M, F, F, 64, "h"));
    return launch<kSwigluForward>(maps, inp, w, M, F, K, stream);
}

extern "C" kl_status kl_gemm_sm90_swiglu_backward_cuda(kl_bf16 *dgu, const kl_bf16 *gu, const kl_bf16 *dout,
                                                       const kl_bf16 *w_t, int M, int F, int K, cudaStream_t stream) {
    if (M < 1 || !kl_gemm_sm90_swiglu_fits(F, K))
        return kl_error(KL_ERR_UNSUPPORTED,
                        "sm90 gemm + swiglu backward: expected M, F, K >= 1, F a multiple of 128, K of 8 (got %d, %d, "
                        "%d)",
                        M, F, K);
    if (!aligned({dgu, gu, dout, w_t}))
        return kl_error(KL_ERR_UNSUPPORTED, "sm90 gemm + swiglu backward: pointers must be 16-byte aligned");
    OutMaps maps;  // the gate and up halves of gu and dgu as (M, F) views each: a slot never crosses into the other
    KL_TRY(tensor_map(&maps.m[0], gu, M, F, 2 * F, 64, "gate", true));
    KL_TRY(tensor_map(&maps.m[1], gu + F, M, F, 2 * F, 64, "up", true));
    KL_TRY(tensor_map(&maps.m[2], dgu, M, F, 2 * F, 64, "dgate", true));
    KL_TRY(tensor_map(&maps.m[3], dgu + F, M, F, 2 * F, 64, "dup", true));
    return launch<kSwigluBackward>(maps, dout, w_t, M, F, K, stream);
}
