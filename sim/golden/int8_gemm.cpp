// onda's exact int8 GEMM for CPUs with AVX-512 VNNI: C[m, n] = sum_k A[m, k] * B[k, n] in int32.
//
// vpdpbusd multiplies unsigned by signed bytes, four products per 32-bit lane, and adds them to the
// lane with a wrapping (not saturating) int32 add. B is packed once as B + 128 (unsigned) and A is
// used as it is (signed), so the kernel sums (B + 128) * A and then subtracts 128 * rowsum(A). All of
// it is arithmetic modulo 2^32, so the result is the exact sum whenever that sum fits int32: for
// int8 operands, whenever K <= 131071 (the caller's bound, see exact_gemm.py).
//
// Layout: A row-major with row stride lda (bytes); packed B in blocks of 16 columns, each block
// [ceil(K/4) groups][16 columns][4 consecutive k], zero padded; C row-major with row stride ldc
// (elements). The 6 x 64 register tile is written out by hand (GCC spills an array of 24
// accumulators); edge tiles use the generic template.
//
// Threads: a call is split by rows (or by column blocks when rows are few) over a small pool of
// persistent workers that spin briefly after each job before they sleep. Handing work to a Python
// thread costs about 70 us on a 2-core VM (two GIL handoffs through the kernel); a spinning
// worker takes it in about a microsecond, and ResNet50 has 53 GEMMs of a few hundred microseconds.
#include <immintrin.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <unistd.h>

namespace {

constexpr int MR = 6;     // rows of the register tile
constexpr int NV = 4;     // 16-column blocks of the register tile
constexpr int KCG = 256;  // k groups (of 4) per cache block: a 64-column panel of B is 64 KiB
constexpr int MC = 96;    // rows per cache block

struct Gemm {
    const int8_t* A;
    long lda;
    const uint8_t* B;
    long bstride;  // bytes between 16-column blocks of packed B
    int kfull;     // whole k groups
    int ktail;     // k values in the last, partial group (0..3)
    int32_t* C;
    long ldc;
    const int32_t* fix;  // 128 * rowsum(A), indexed by row
};

inline int32_t group(const int8_t* a, int bytes) {
    int32_t w = 0;
    std::memcpy(&w, a, bytes);
    return w;
}

template <int R, int V>
void tile_generic(const Gemm& g, int m, int nb, int kg0, int kg1, bool first, bool last, __mmask16 lastmask) {
    __m512i acc[R][V];
    int32_t* c = g.C + m * g.ldc + nb * 16;
    for (int i = 0; i < R; i++)
        for (int j = 0; j < V; j++)
            acc[i][j] = first ? _mm512_setzero_si512()
                              : _mm512_maskz_loadu_epi32(j == V - 1 ? lastmask : 0xFFFF, c + i * g.ldc + j * 16);
    const int8_t* a = g.A + m * g.lda;
    const uint8_t* b = g.B + nb * g.bstride;
    int kend = last && g.ktail ? kg1 + 1 : kg1;
    for (int kg = kg0; kg < kend; kg++) {
        int bytes = kg < g.kfull ? 4 : g.ktail;
        __m512i bv[V];
        for (int j = 0; j < V; j++) bv[j] = _mm512_loadu_si512(b + j * g.bstride + kg * 64);
        for (int i = 0; i < R; i++) {
            __m512i av = _mm512_set1_epi32(group(a + i * g.lda + kg * 4, bytes));
            for (int j = 0; j < V; j++) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], bv[j], av);
        }
    }
    for (int i = 0; i < R; i++)
        for (int j = 0; j < V; j++) {
            __m512i v = last ? _mm512_sub_epi32(acc[i][j], _mm512_set1_epi32(g.fix[m + i])) : acc[i][j];
            _mm512_mask_storeu_epi32(c + i * g.ldc + j * 16, j == V - 1 ? lastmask : 0xFFFF, v);
        }
}

// The 6 x 64 tile with every accumulator a named variable.
void tile_6x64(const Gemm& g, int m, int nb, int kg0, int kg1, bool first, bool last, __mmask16 lastmask) {
    if (lastmask != 0xFFFF) return tile_generic<6, 4>(g, m, nb, kg0, kg1, first, last, lastmask);
    int32_t* c = g.C + m * g.ldc + nb * 16;
    const long ldc = g.ldc, lda = g.lda, bs = g.bstride;
#define ONDA_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define ONDA_DECL(i) __m512i c##i##0, c##i##1, c##i##2, c##i##3;
#define ONDA_INIT(i)                                                                                   \
    if (first) {                                                                                       \
        c##i##0 = c##i##1 = c##i##2 = c##i##3 = _mm512_setzero_si512();                                \
    } else {                                                                                           \
        c##i##0 = _mm512_loadu_si512(c + i * ldc), c##i##1 = _mm512_loadu_si512(c + i * ldc + 16);     \
        c##i##2 = _mm512_loadu_si512(c + i * ldc + 32), c##i##3 = _mm512_loadu_si512(c + i * ldc + 48); \
    }
#define ONDA_STEP(i, bytes)                                                           \
    {                                                                                 \
        __m512i av = _mm512_set1_epi32(group(a + i * lda, bytes));                    \
        c##i##0 = _mm512_dpbusd_epi32(c##i##0, b0, av);                               \
        c##i##1 = _mm512_dpbusd_epi32(c##i##1, b1, av);                               \
        c##i##2 = _mm512_dpbusd_epi32(c##i##2, b2, av);                               \
        c##i##3 = _mm512_dpbusd_epi32(c##i##3, b3, av);                               \
    }
#define ONDA_FULL(i) ONDA_STEP(i, 4)
#define ONDA_TAIL(i) ONDA_STEP(i, g.ktail)
#define ONDA_LOADB                                                                    \
    __m512i b0 = _mm512_loadu_si512(b), b1 = _mm512_loadu_si512(b + bs);              \
    __m512i b2 = _mm512_loadu_si512(b + 2 * bs), b3 = _mm512_loadu_si512(b + 3 * bs);
#define ONDA_STORE(i)                                                                          \
    if (last) {                                                                                \
        __m512i s = _mm512_set1_epi32(g.fix[m + i]);                                           \
        c##i##0 = _mm512_sub_epi32(c##i##0, s), c##i##1 = _mm512_sub_epi32(c##i##1, s);        \
        c##i##2 = _mm512_sub_epi32(c##i##2, s), c##i##3 = _mm512_sub_epi32(c##i##3, s);        \
    }                                                                                          \
    _mm512_storeu_si512(c + i * ldc, c##i##0), _mm512_storeu_si512(c + i * ldc + 16, c##i##1); \
    _mm512_storeu_si512(c + i * ldc + 32, c##i##2), _mm512_storeu_si512(c + i * ldc + 48, c##i##3);
    ONDA_ROWS(ONDA_DECL)
    ONDA_ROWS(ONDA_INIT)
    const int8_t* a = g.A + m * lda + kg0 * 4;
    const uint8_t* b = g.B + nb * bs + kg0 * 64;
    for (int kg = kg0; kg < kg1; kg++, a += 4, b += 64) {
        ONDA_LOADB
        ONDA_ROWS(ONDA_FULL)
    }
    if (last && g.ktail) {
        ONDA_LOADB
        ONDA_ROWS(ONDA_TAIL)
    }
    ONDA_ROWS(ONDA_STORE)
#undef ONDA_ROWS
#undef ONDA_DECL
#undef ONDA_INIT
#undef ONDA_STEP
#undef ONDA_FULL
#undef ONDA_TAIL
#undef ONDA_LOADB
#undef ONDA_STORE
}

using Tile = void (*)(const Gemm&, int, int, int, int, bool, bool, __mmask16);

template <int R>
Tile pick(int v) {
    return v == 1 ? tile_generic<R, 1> : v == 2 ? tile_generic<R, 2> : v == 3 ? tile_generic<R, 3> : tile_generic<R, 4>;
}

Tile tile(int r, int v) {
    switch (r) {
        case 1: return pick<1>(v);
        case 2: return pick<2>(v);
        case 3: return pick<3>(v);
        case 4: return pick<4>(v);
        case 5: return pick<5>(v);
        default: return v == NV ? tile_6x64 : pick<6>(v);
    }
}

// 128 * sum_k A[m, k] (mod 2^32, as the GEMM) for rows [m0, m1), into out[0 .. m1 - m0).
void row_fix(const int8_t* A, long lda, int K, int m0, int m1, int32_t* out) {
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80)), zero = _mm512_setzero_si512();
    for (int m = m0; m < m1; m++) {
        const int8_t* a = A + m * lda;
        __m512i s = zero;
        int k = 0;
        for (; k + 64 <= K; k += 64)  // sums of (a + 128) over 8-byte groups, in four 64-bit lanes
            s = _mm512_add_epi64(s, _mm512_sad_epu8(_mm512_xor_si512(_mm512_loadu_si512(a + k), flip), zero));
        int64_t t = _mm512_reduce_add_epi64(s) - 128 * static_cast<int64_t>(k);
        for (; k < K; k++) t += a[k];
        out[m - m0] = static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(t) << 7));
    }
}


// -- the worker pool ---------------------------------------------------------------------------------
constexpr int SPIN_US = 200;  // how long an idle worker spins for the next job before it sleeps

class Pool {
  public:
    ~Pool() { resize(0); }

    int size() {
        forked();
        return static_cast<int>(workers_.size()) + 1;
    }

    void resize(int threads) {  // threads in all, this one included
        forked();
        {
            std::lock_guard<std::mutex> lk(m_);
            stop_ = true;
            gen_.fetch_add(1);
        }
        cv_.notify_all();
        for (auto& t : workers_) t.join();
        workers_.clear();
        stop_ = false;
        const uint64_t now = gen_.load();  // a worker starting late must still see the next job as new
        for (int i = 1; i < threads; i++) workers_.emplace_back([this, i, now] { loop(i, now); });
    }

    // job(0) on this thread, job(1 .. size - 1) on the workers; returns when all are done. A caller
    // finding the pool busy (another Python thread's GEMM) runs every part itself instead.
    void run(int parts, const std::function<void(int)>& job) {
        forked();
        std::unique_lock<std::mutex> busy(run_, std::try_to_lock);
        if (!busy.owns_lock() || parts <= 1 || workers_.empty()) {
            for (int i = 0; i < parts; i++) job(i);
            return;
        }
        parts = parts < size() ? parts : size();
        {
            std::lock_guard<std::mutex> lk(m_);
            job_ = &job;
            parts_ = parts;
            pending_.store(parts - 1);
            gen_.fetch_add(1, std::memory_order_release);
        }
        cv_.notify_all();
        job(0);
        while (pending_.load(std::memory_order_acquire) > 0) _mm_pause();
    }

  private:
    // A forked child has the pool's memory but none of its threads: forget them (never join them).
    void forked() {
        if (owner_ == getpid()) return;
        new (&workers_) std::vector<std::thread>();  // the parent's handles are leaked, not destroyed
        new (&m_) std::mutex();
        new (&run_) std::mutex();
        new (&cv_) std::condition_variable();
        pending_.store(0);
        stop_ = false;
        owner_ = getpid();
    }

    void loop(int me, uint64_t seen) {
        for (;;) {
            auto t0 = std::chrono::steady_clock::now();
            unsigned spins = 0;
            while (gen_.load(std::memory_order_acquire) == seen) {
                _mm_pause();
                if ((++spins & 1023) == 0 && std::chrono::steady_clock::now() - t0 > std::chrono::microseconds(SPIN_US)) {
                    std::unique_lock<std::mutex> lk(m_);
                    cv_.wait(lk, [&] { return gen_.load() != seen; });
                }
            }
            seen = gen_.load(std::memory_order_acquire);
            if (stop_) return;
            const std::function<void(int)>* job;
            int parts;
            {
                std::lock_guard<std::mutex> lk(m_);
                job = job_;
                parts = parts_;
            }
            if (me < parts) {
                (*job)(me);
                pending_.fetch_sub(1, std::memory_order_release);
            }
        }
    }

    std::vector<std::thread> workers_;
    std::mutex m_, run_;
    std::condition_variable cv_;
    std::atomic<uint64_t> gen_{0};
    std::atomic<int> pending_{0};
    const std::function<void(int)>* job_ = nullptr;
    int parts_ = 0;
    bool stop_ = false;
    pid_t owner_ = getpid();
};

Pool& pool() {
    static Pool p;
    return p;
}

}  // namespace

extern "C" {

int onda_gemm_abi() { return 2; }

int onda_gemm_cpu_ok() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vnni");
}

long onda_gemm_packed_bytes(int K, int N) { return static_cast<long>((N + 15) / 16) * ((K + 3) / 4) * 64; }

// B [K, N] int8 with row stride ldb -> packed B + 128 (see the layout above).
void onda_gemm_pack(const int8_t* B, long ldb, int K, int N, uint8_t* out) {
    const long groups = (K + 3) / 4;
    std::memset(out, 0, onda_gemm_packed_bytes(K, N));
    for (int k = 0; k < K; k++)
        for (int n = 0; n < N; n++)
            out[(n / 16) * groups * 64 + (k / 4) * 64 + (n % 16) * 4 + k % 4] =
                static_cast<uint8_t>(B[k * ldb + n] + 128);
}

// Threads the GEMMs use, this one included (a pool of threads - 1 workers).
void onda_gemm_set_threads(int threads) {
    if (threads < 1) threads = 1;
    if (threads != pool().size()) pool().resize(threads);
}

// Rows [m0, m1) and 16-column blocks [nb0, nb1) of C = A B, on this thread.
void onda_gemm_part(const int8_t* A, long lda, const uint8_t* B, int K, int N, int32_t* C, long ldc, int m0, int m1,
                    int nb0, int nb1) {
    const int groups = (K + 3) / 4, blocks = (N + 15) / 16;
    const __mmask16 edge = N % 16 ? static_cast<__mmask16>((1u << (N % 16)) - 1) : 0xFFFF;
    if (nb1 > blocks) nb1 = blocks;
    int32_t fix[MC];
    for (int mm = m0; mm < m1; mm += MC) {
        const int me = mm + MC < m1 ? mm + MC : m1;
        row_fix(A, lda, K, mm, me, fix);
        const Gemm g{A, lda, B, static_cast<long>(groups) * 64, K / 4, K % 4, C, ldc, fix - mm};
        for (int kg0 = 0;; kg0 += KCG) {
            const int kg1 = kg0 + KCG < g.kfull ? kg0 + KCG : g.kfull;  // whole groups; the tail goes last
            const bool last = kg1 == g.kfull;
            for (int nb = nb0; nb < nb1; nb += NV) {
                const int v = nb1 - nb < NV ? nb1 - nb : NV;
                const __mmask16 lm = nb + v == blocks ? edge : 0xFFFF;
                for (int m = mm; m < me; m += MR) tile(me - m < MR ? me - m : MR, v)(g, m, nb, kg0, kg1, kg0 == 0, last, lm);
            }
            if (last) break;
        }
    }
}

// C = A B for A [M, K], split over the pool: by rows in multiples of the tile when there are
// enough, else by 16-column blocks; on this thread alone when the product is small.
void onda_gemm(const int8_t* A, long lda, const uint8_t* B, int K, int N, int32_t* C, long ldc, int M) {
    const int blocks = (N + 15) / 16;
    const double macs = static_cast<double>(M) * N * K;
    int parts = pool().size();
    if (macs < (1 << 22)) parts = 1;  // about 20 us of work: less than a handoff saves
    if (parts > 1 && M >= 4 * MR * parts) {
        pool().run(parts, [&](int i) {
            int r0 = static_cast<int>(static_cast<long>(M / MR) * i / parts) * MR;
            int r1 = i == parts - 1 ? M : static_cast<int>(static_cast<long>(M / MR) * (i + 1) / parts) * MR;
            onda_gemm_part(A, lda, B, K, N, C, ldc, r0, r1, 0, blocks);
        });
    } else if (parts > 1 && blocks >= parts) {
        pool().run(parts, [&](int i) {
            onda_gemm_part(A, lda, B, K, N, C, ldc, 0, M, blocks * i / parts, blocks * (i + 1) / parts);
        });
    } else {
        onda_gemm_part(A, lda, B, K, N, C, ldc, 0, M, 0, blocks);
    }
}

}  // extern "C"
